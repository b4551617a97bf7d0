"""The SLA watcher: one SlaBreached per request past its due date, published to `desk.requests`.

The breach is an event on the request's own partition, not a write to the projection: the projection folds it
like any other (so the timeline says when the deadline passed, a rebuild replays it, and the state machine
decides whether it applies). Its id is derived from the tracking code and the due date, so several replicas,
restarts and re-checks before the fold all publish the same event and it is applied once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime

from prometheus_client import Counter, Gauge

from shared.domain.state_machine import FINAL_STATES, RequestState
from shared.domain.working_days import tehran_day
from shared.events import SlaBreached, sla_breach_event_id

from .store import Sessions, count_by_status, overdue_requests

log = logging.getLogger(__name__)

BREACHES = Counter("khedmat_tracking_sla_breaches_total", "SlaBreached events the watcher published")
REQUESTS_BY_STATE = Gauge("khedmat_tracking_requests", "Requests in the projection, by state", ["state"])
_OPEN = sorted(state.value for state in RequestState if state not in FINAL_STATES)


class SlaWatcher:
    """Finds open requests whose due date has passed (Tehran's calendar day) and publishes their breach."""

    def __init__(
        self,
        *,
        sessions: Sessions,
        publish: Callable[[SlaBreached], Awaitable[object]],
        poll_s: float = 60.0,
        batch: int = 500,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sessions = sessions
        self.publish = publish
        self.poll_s = poll_s
        self.batch = batch
        self.now = now
        # Published but maybe not folded yet: not published again until the fold catches up (bounded memory).
        self._recent: OrderedDict[tuple[str, date], None] = OrderedDict()

    async def overdue(self, today: date) -> list[tuple[str, date, int]]:
        """Open, not yet breached requests due before `today`: (code, due date, working days allowed)."""
        return await overdue_requests(sessions=self.sessions, today=today, open_states=_OPEN, limit=self.batch)

    async def check_once(self) -> int:
        """Publish the breach of every overdue request not published recently; returns how many went out."""
        today = tehran_day(self.now())
        published = 0
        for code, due_on, duration in await self.overdue(today):
            if (code, due_on) in self._recent:
                continue
            event = SlaBreached(
                event_id=sla_breach_event_id(code, due_on),
                tracking_code=code,
                occurred_at=self.now(),
                due_on=due_on,
                duration_working_days=duration or 1,
            )
            await self.publish(event)
            self._recent[(code, due_on)] = None
            while len(self._recent) > 10 * self.batch:
                self._recent.popitem(last=False)
            published += 1
        if published:
            BREACHES.inc(published)
            log.info("published %d SLA breaches", published)
        return published

    async def count_by_state(self) -> dict[str, int]:
        """How many requests the projection holds in each state; also sets REQUESTS_BY_STATE (every state, 0s too).

        Done with the breach check, once a round (a minute by default). A GROUP BY over the whole table: cheap at
        a ministry's scale; a national table would keep these counts in the fold instead."""
        counts = {state.value: 0 for state in RequestState} | await count_by_status(sessions=self.sessions)
        for state, count in counts.items():
            REQUESTS_BY_STATE.labels(state).set(count)
        return counts

    async def run(self) -> None:
        """Check until cancelled; a failing check (Kafka, the database) is logged and retried next round."""
        while True:
            try:
                await self.check_once()
                await self.count_by_state()
            except Exception as error:
                log.warning("SLA check failed, retrying in %.0fs: %s", self.poll_s, type(error).__name__)
            await asyncio.sleep(self.poll_s)

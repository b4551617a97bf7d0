"""tracking's bus edges: its dependencies, its subscriber of desk.notifications, and its subscription and
publication of the projection as AsyncAPI declarations."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from faststream.kafka import KafkaRouter

from shared.events import NotificationOutcome, RequestEvent, SlaBreached, StatusChanged
from shared.kafka import make_router
from shared.topics import Topic

from .adapters_cache import ChangeFeed, StatusCache
from .adapters_throttle import LookupThrottle
from .service import Sessions, record_notification
from .service_history import HistoryTokens, NotifyCodeSender, OneTimeCodes

log = logging.getLogger(__name__)

SUBSCRIPTION_DESCRIPTION = (
    "Folds every request event into the status projection, a fetched batch per transaction; offsets are stored "
    "with the rows, and each assigned partition resumes from them."
)


@dataclass
class Tracking:
    """tracking's dependencies."""

    sessions: Sessions
    lookup_key: bytes
    throttle: LookupThrottle
    cache: StatusCache
    changes: ChangeFeed
    tokens: HistoryTokens
    code_throttle: LookupThrottle
    codes: OneTimeCodes
    code_sender: NotifyCodeSender
    stream_max_s: float = 1800.0


def documentation_router(*, group_id: str) -> KafkaRouter:
    """tracking's subscription and publications as faststream declarations, for the AsyncAPI document only."""
    router = make_router()
    router.publisher(Topic.STATUS, title="desk.status:StatusChanged", schema=StatusChanged)
    router.publisher(
        Topic.REQUESTS,
        title="desk.requests:SlaBreached",
        description="The SLA watcher's one event per request past its due date (id derived from code and date).",
        schema=SlaBreached,
    )

    @router.subscriber(
        Topic.REQUESTS, group_id=group_id, title="desk.requests:tracking", description=SUBSCRIPTION_DESCRIPTION
    )
    async def on_request_event(body: RequestEvent) -> None:
        raise NotImplementedError("documentation only: records are folded by ProjectionConsumer")

    return router


def notifications_router(
    *, sessions: Sessions, group_id: str, on_stored: Callable[[Iterable[str]], Awaitable[None]] | None = None
) -> KafkaRouter:
    """The subscription to desk.notifications: each outcome kept as its notification's latest state.

    `on_stored` is told which request changed (the lookup cache and live streams), like the fold's
    `on_committed`. A consumer group of its own: the projection's consumer keeps its offsets in its tables
    instead, and the two topics are read independently. The running service consumes it with a
    KeyOrderedConsumer (`store_outcome` per record, commits batched; a faststream subscriber commits each
    record and tops out at a few dozen a second); this router declares it for AsyncAPI and drives the same
    `store_outcome` in unit tests.
    """
    # make_router: an included router's subscribers would otherwise auto-commit (see shared.kafka).
    router = make_router()

    @router.subscriber(
        Topic.NOTIFICATIONS,
        group_id=f"{group_id}-notifications",
        auto_offset_reset="earliest",
        title="desk.notifications:tracking",
        description=(
            "Keeps each notification's latest outcome (sent, then delivered or failed; never back) for the "
            "citizen's status answer."
        ),
    )
    async def on_notification_outcome(body: dict[str, Any]) -> None:
        await store_outcome(sessions=sessions, body=body, on_stored=on_stored)

    return router


async def store_outcome(
    *, sessions: Sessions, body: Any, on_stored: Callable[[Iterable[str]], Awaitable[None]] | None = None
) -> None:
    """Keep one desk.notifications record's outcome as its notification's latest state, then tell `on_stored`."""
    # A newer producer's event type: skipped unparsed, so the partition is never blocked by it.
    if not isinstance(body, dict) or body.get("event_type") != "NotificationOutcome":
        return
    outcome = NotificationOutcome.model_validate(body)
    if not await record_notification(sessions=sessions, outcome=outcome) or on_stored is None:
        return
    try:
        await on_stored({outcome.tracking_code})
    except Exception as error:  # the outcome is stored; a cache's TTL covers a missed notice
        log.warning("after-store notice failed: %s", type(error).__name__)

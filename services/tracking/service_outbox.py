"""The outbox relay: publishes StatusChanged rows committed with the projection, at least once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Protocol

from opentelemetry import propagate
from opentelemetry.trace import Tracer

from shared.kafka import scrub

from .store import Sessions, mark_published, pending_outbox

log = logging.getLogger(__name__)


class RecordPublisher(Protocol):
    """Publishes one record as it was stored (value, key and headers ready): what the relay needs of a broker."""

    async def publish(self, message: bytes, topic: str, *, key: bytes, headers: dict[str, str]) -> object: ...


class OutboxRelay:
    """Moves committed outbox rows to Kafka; a crash between commit and publish only delays them."""

    def __init__(self, *, sessions: Sessions, broker: RecordPublisher, tracer: Tracer, poll_s: float) -> None:
        self.sessions = sessions
        self.broker = broker
        self.tracer = tracer
        self.poll_s = poll_s
        self.wakeup = asyncio.Event()

    async def publish_pending(self, batch: int = 200) -> int:
        """Publish up to `batch` unpublished rows in commit order; returns how many went out."""
        rows = await pending_outbox(sessions=self.sessions, limit=batch)
        for row in rows:
            # Continue the trace of the event that caused the change, across the commit/relay gap.
            context = propagate.extract(json.loads(row.trace_context))
            with self.tracer.start_as_current_span("desk.status outbox relay", context=context):
                await self.broker.publish(
                    row.value.encode(), row.topic, key=row.key.encode(), headers=json.loads(row.headers)
                )
            await mark_published(sessions=self.sessions, message_id=row.id)
        return len(rows)

    async def run(self) -> None:
        """Relay until cancelled; woken by each fold, polling as a backstop."""
        while True:
            try:
                if await self.publish_pending():
                    continue
            except Exception as error:  # Kafka or the database hiccuped: the rows stay, try again shortly
                log.warning("outbox relay failed, retrying: %s", scrub(repr(error)))
                await asyncio.sleep(self.poll_s)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    await self.wakeup.wait()
            self.wakeup.clear()

"""Rebuild the projection from offset 0 into staging tables, then swap them in, while lookups go on.

`python -m services.tracking rebuild` (beside the running service, which keeps folding and answering):

1. create `<table>_next` copies of the projection's tables (from the current tables in store.py: a rebuild is also how a
   changed projection schema is filled);
2. fold the topic from its first record into them with the live fold's own code, but writing no outbox rows:
   history must not text anyone again;
3. never fold past what the live projection has folded (its stored offsets): every event's StatusChanged is
   then emitted once, by the live fold;
4. when the staging offsets equal the live ones, in one transaction that re-reads the live offsets (and on
   PostgreSQL locks them), rename the live tables away and the staging tables in; the live consumer's
   position is exactly the new tables' offsets, so it goes on without a seek;
5. drop the old tables.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.kafka import make_consumer, topic_partitions
from shared.settings import KafkaSettings

from .consumers import BATCH_SECONDS, FOLDED, decode
from .service import Delivered, Position, Projector, stored_offsets
from .store import ProjectionTables
from .store_rebuild import NotCaughtUp, drop_tables, recreate, staging_tables, swap_in

log = logging.getLogger(__name__)


@dataclass
class RebuildReport:
    """What a rebuild did."""

    events: int
    seconds: float
    swapped: bool
    offsets: dict[int, int]
    # The replaced tables, when kept (drop_retired=False) for a comparison.
    retired: list[str] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


@dataclass
class _Replay:
    """One rebuild under way: what it reads the topic with, how far it has folded, where it must stop."""

    engine: AsyncEngine
    live: Projector
    staged: Projector
    consumer: AIOKafkaConsumer
    kafka: KafkaSettings
    topic: str
    batch: int
    idle_timeout_s: float
    on_progress: Callable[[int, dict[int, int]], None]
    started: float = field(default_factory=time.perf_counter)
    assigned: list[TopicPartition] = field(default_factory=list)
    folded_to: dict[int, int] = field(default_factory=dict)
    paused: set[TopicPartition] = field(default_factory=set)
    events: int = 0
    last_progress: float = field(default_factory=time.monotonic)

    async def from_the_start(self) -> None:
        """Read every partition of the topic from its first record."""
        partitions = await topic_partitions(self.kafka, self.topic)
        if not partitions:
            raise LookupError(f"topic {self.topic!r} has no partitions (does it exist?)")
        self.assigned = [TopicPartition(self.topic, partition) for partition in partitions]
        self.consumer.assign(self.assigned)
        await self.consumer.seek_to_beginning(*self.assigned)
        first = await self.consumer.beginning_offsets(self.assigned)
        self.folded_to = {tp.partition: first[tp] for tp in self.assigned}

    def caught_up(self, targets: dict[int, int]) -> bool:
        """Pause the partitions folded as far as the live projection, resume the others; True when all are."""
        for tp in self.assigned:
            reached = self.folded_to[tp.partition] >= targets.get(tp.partition, 0)
            if reached and tp not in self.paused:
                self.consumer.pause(tp)
                self.paused.add(tp)
            elif not reached and tp in self.paused:
                self.consumer.resume(tp)
                self.paused.discard(tp)
        return len(self.paused) == len(self.assigned)

    async def fetch(self, targets: dict[int, int]) -> list[Delivered]:
        """The next records, each short of its partition's target (only as far as the live projection)."""
        fetched = await self.consumer.getmany(timeout_ms=200, max_records=self.batch)
        delivered: list[Delivered] = []
        for tp, records in fetched.items():
            limit = targets.get(tp.partition, 0)
            kept = [record for record in records if record.offset < limit]
            if len(kept) < len(records):
                self.consumer.seek(tp, limit)  # read the rest again once the live fold has passed it
            for record in kept:
                try:
                    delivered.append(decode(record, with_headers=False))
                except Exception:  # the live consumer dead-lettered it already: skip it here too
                    delivered.append(Delivered(Position(record.topic, record.partition, record.offset), None))
            if kept:
                self.folded_to[tp.partition] = kept[-1].offset + 1
        return delivered

    async def fold_until_caught_up(self) -> None:
        """Fold the topic into the staging tables until every partition is as far as the live projection."""
        folded_seconds = BATCH_SECONDS.labels("rebuild")
        folded_count = FOLDED.labels("rebuild")
        while True:
            # Only as far as the live projection: beyond that, the live fold has yet to emit StatusChanged.
            targets = await stored_offsets(sessions=self.live.sessions, topic=self.topic, tables=self.live.tables)
            if self.caught_up(targets):
                return
            delivered = await self.fetch(targets)
            if delivered:
                with folded_seconds.time():
                    await self.staged.fold_batch(delivered)
                folded_count.inc(len(delivered))
                self.events += len(delivered)
                self.last_progress = time.monotonic()
                self.on_progress(self.events, dict(self.folded_to))
            elif time.monotonic() - self.last_progress > self.idle_timeout_s:
                raise TimeoutError(
                    f"rebuild made no progress for {self.idle_timeout_s}s: is the live consumer running?"
                )

    async def swapped(self, staging: ProjectionTables) -> list[str] | None:
        """The retired tables' names once the staging tables are swapped in; None: not caught up after all."""
        try:
            return await swap_in(
                self.engine, topic=self.topic, staging=staging, folded_to=self.folded_to, live=self.live.tables
            )
        except (NotCaughtUp, DBAPIError) as error:  # the live fold moved on, or SQLite's snapshot did
            log.info("not swapping yet: %s", error)
            await asyncio.sleep(0.05)
            return None


def _staged(projector: Projector, staging: ProjectionTables) -> Projector:
    """The live projector's twin on the staging tables: no outbox rows, its folded requests kept in memory."""
    return Projector(
        projector.sessions,
        projector.lookup_key,
        projector.terms_of,
        projector.calendar,
        tables=staging,
        emit_status=False,
        now=projector.now,
        carry_working=True,
    )


async def rebuild(
    *,
    engine: AsyncEngine,
    projector: Projector,
    kafka: KafkaSettings,
    topic: str,
    batch: int = 10_000,
    swap: bool = True,
    drop_retired: bool = True,
    idle_timeout_s: float = 60.0,
    on_progress: Callable[[int, dict[int, int]], None] = lambda events, offsets: None,
) -> RebuildReport:
    """Rebuild `projector`'s live projection from offset 0 (see the module docstring); returns what it did.

    `projector` is configured like the live one (key, terms, calendar); its tables and outbox switch are
    replaced here. Gives up (without swapping) when the live projection stays out of reach for
    `idle_timeout_s` (a stopped live consumer cannot be caught up with).
    """
    staging = staging_tables(projector.tables)
    await recreate(engine, staging)
    consumer = make_consumer(
        kafka,
        group_id=None,
        client_id="tracking-rebuild",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    replay = _Replay(
        engine, projector, _staged(projector, staging), consumer, kafka, topic, batch, idle_timeout_s, on_progress
    )
    try:
        await replay.from_the_start()
        while swap:
            await replay.fold_until_caught_up()
            retired = await replay.swapped(staging)
            if retired is None:
                continue
            seconds = time.perf_counter() - replay.started
            if drop_retired:
                await drop_tables(engine, retired)
                retired = []
            return RebuildReport(replay.events, seconds, True, replay.folded_to, retired)
        await replay.fold_until_caught_up()
    finally:
        await consumer.stop()
    return RebuildReport(replay.events, time.perf_counter() - replay.started, False, replay.folded_to)

"""Rebuild the projection from offset 0 into staging tables, then swap them in, while lookups go on.

`python -m services.tracking rebuild` (beside the running service, which keeps folding and answering):

1. create `<table>_next` copies of the projection's tables (from the current models: a rebuild is also how a
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
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from sqlalchemy import MetaData, Table, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import quoted_name

from shared.kafka import make_consumer, topic_partitions
from shared.settings import KafkaSettings

from .consumers import BATCH_SECONDS, FOLDED, decode
from .service import LIVE_TABLES, Delivered, Position, ProjectionTables, Projector, stored_offsets

log = logging.getLogger(__name__)

STAGING_SUFFIX = "_next"


def staging_tables(live: ProjectionTables = LIVE_TABLES, suffix: str = STAGING_SUFFIX) -> ProjectionTables:
    """Copies of the live tables under other names; index names get a fresh token (they outlive renames)."""
    metadata = MetaData()
    token = secrets.token_hex(3)
    copies = []
    for table in live.all():
        copy = table.to_metadata(metadata, name=f"{table.name}{suffix}")
        for index in copy.indexes:
            columns = "_".join(column.name for column in index.columns)
            index.name = quoted_name(f"ix_{copy.name}_{columns}_{token}", None)
        copies.append(copy)
    return ProjectionTables(*copies)


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


class NotCaughtUp(Exception):
    """The live projection moved on between the check and the swap: fold more, try again."""


async def _recreate(engine: AsyncEngine, tables: ProjectionTables) -> None:
    def recreate(sync: Connection) -> None:
        for table in reversed(tables.all()):
            table.drop(sync, checkfirst=True)
        for table in tables.all():
            table.create(sync)

    async with engine.begin() as connection:
        await connection.run_sync(recreate)


async def _rename(connection: AsyncConnection, old: Table | str, new: str) -> None:
    name = old if isinstance(old, str) else old.name
    quoted = connection.dialect.identifier_preparer.quote
    await connection.execute(text(f"ALTER TABLE {quoted(name)} RENAME TO {quoted(new)}"))


async def swap_in(
    engine: AsyncEngine, *, topic: str, staging: ProjectionTables, folded_to: dict[int, int], live: ProjectionTables
) -> list[str]:
    """Swap the staging tables in if they hold exactly what the live ones do; returns the retired tables' names."""
    retired_suffix = f"_retired_{secrets.token_hex(3)}"
    async with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            # Python's sqlite3 opens no transaction for DDL on its own: without this, each rename would commit
            # alone and a lookup could meet a moment with no `timeline_entry`. IMMEDIATE: the write lock first.
            await connection.exec_driver_sql("BEGIN IMMEDIATE")
        if connection.dialect.name == "postgresql":
            # Live folds update their offsets first: holding this lock, nothing is folded until we commit.
            await connection.execute(text(f"LOCK TABLE {live.offsets.name} IN SHARE ROW EXCLUSIVE MODE"))
        rows = await connection.execute(
            select(live.offsets.c.partition, live.offsets.c.next_offset).where(live.offsets.c.topic == topic)
        )
        current = {partition: next_offset for partition, next_offset in rows}
        if any(folded_to.get(partition, 0) != next_offset for partition, next_offset in current.items()):
            raise NotCaughtUp(f"live {current} vs rebuilt {folded_to}")
        retired = []
        for live_table, staged in zip(live.all(), staging.all(), strict=True):
            await _rename(connection, live_table, live_table.name + retired_suffix)
            await _rename(connection, staged, live_table.name)
            retired.append(live_table.name + retired_suffix)
        return retired


async def drop_tables(engine: AsyncEngine, names: list[str]) -> None:
    """Drop tables by name (the retired projection)."""
    async with engine.begin() as connection:
        quoted = connection.dialect.identifier_preparer.quote
        for name in names:
            await connection.execute(text(f"DROP TABLE IF EXISTS {quoted(name)}"))


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
    live = projector.tables
    staging = staging_tables(live)
    await _recreate(engine, staging)
    staged = Projector(
        projector.sessions,
        projector.lookup_key,
        projector.terms_of,
        projector.calendar,
        tables=staging,
        emit_status=False,
        now=projector.now,
        carry_working=True,
    )
    consumer = make_consumer(
        kafka,
        group_id=None,
        client_id="tracking-rebuild",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    started = time.perf_counter()
    events = 0
    folded_seconds = BATCH_SECONDS.labels("rebuild")
    folded_count = FOLDED.labels("rebuild")
    try:
        partitions = await topic_partitions(kafka, topic)
        if not partitions:
            raise LookupError(f"topic {topic!r} has no partitions (does it exist?)")
        assigned = [TopicPartition(topic, partition) for partition in partitions]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        first = await consumer.beginning_offsets(assigned)
        folded_to = {tp.partition: first[tp] for tp in assigned}
        paused: set[TopicPartition] = set()
        last_progress = time.monotonic()
        while True:
            targets = await stored_offsets(sessions=projector.sessions, topic=topic, tables=live)
            # Only as far as the live projection: beyond that, the live fold has yet to emit StatusChanged.
            for tp in assigned:
                reached = folded_to[tp.partition] >= targets.get(tp.partition, 0)
                if reached and tp not in paused:
                    consumer.pause(tp)
                    paused.add(tp)
                elif not reached and tp in paused:
                    consumer.resume(tp)
                    paused.discard(tp)
            if len(paused) == len(assigned):
                if not swap:
                    break
                try:
                    retired = await swap_in(engine, topic=topic, staging=staging, folded_to=folded_to, live=live)
                except (NotCaughtUp, DBAPIError) as error:  # the live fold moved on, or SQLite's snapshot did
                    log.info("not swapping yet: %s", error)
                    await asyncio.sleep(0.05)
                    continue
                seconds = time.perf_counter() - started
                if drop_retired:
                    await drop_tables(engine, retired)
                    retired = []
                return RebuildReport(events, seconds, True, folded_to, retired)
            fetched = await consumer.getmany(timeout_ms=200, max_records=batch)
            delivered: list[Delivered] = []
            for tp, records in fetched.items():
                limit = targets.get(tp.partition, 0)
                kept = [record for record in records if record.offset < limit]
                if len(kept) < len(records):
                    consumer.seek(tp, limit)  # read the rest again once the live fold has passed it
                for record in kept:
                    try:
                        delivered.append(decode(record, with_headers=False))
                    except Exception:  # the live consumer dead-lettered it already: skip it here too
                        delivered.append(Delivered(Position(record.topic, record.partition, record.offset), None))
                if kept:
                    folded_to[tp.partition] = kept[-1].offset + 1
            if delivered:
                with folded_seconds.time():
                    await staged.fold_batch(delivered)
                folded_count.inc(len(delivered))
                events += len(delivered)
                last_progress = time.monotonic()
                on_progress(events, dict(folded_to))
            elif time.monotonic() - last_progress > idle_timeout_s:
                raise TimeoutError(f"rebuild made no progress for {idle_timeout_s}s: is the live consumer running?")
    finally:
        await consumer.stop()
    return RebuildReport(events, time.perf_counter() - started, False, folded_to)

"""The fold's SQL: the offsets a batch reads under lock and moves, the requests it loads, the rows it writes.

The caller holds one transaction for a whole batch: every function here runs on its connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .domain_folding import REQUEST_FIELDS, ProjectedRequest
from .store import OUTBOX_TABLE, ProjectionTables

# SQLite allows 32,766 bound parameters per statement: stay well below in IN (...) lists.
_IN_CHUNK = 500


@dataclass
class Working:
    """The requests a batch touches, loaded once, folded in memory, written once."""

    records: dict[str, ProjectedRequest] = field(default_factory=dict)
    existing: set[str] = field(default_factory=set)
    dirty: set[str] = field(default_factory=set)
    seen: dict[str, set[str]] = field(default_factory=dict)
    next_seq: dict[str, int] = field(default_factory=dict)
    # Codes whose rows were read (or found absent): a carried working set reads each code once.
    loaded: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class OutboxRow:
    """A StatusChanged to commit with the batch: where it goes, its body and headers, the trace it continues."""

    topic: str
    key: str
    value: str
    headers: str
    trace_context: str


def _chunks(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[start : start + _IN_CHUNK] for start in range(0, len(items), _IN_CHUNK)]


async def lock_offsets(
    connection: AsyncConnection, tables: ProjectionTables, topics: list[str]
) -> dict[tuple[str, int], int]:
    """The stored next offset per (topic, partition) of `topics`, locked for this transaction."""
    # FOR UPDATE: two replicas folding one partition during a rebalance serialise here (PostgreSQL).
    rows = await connection.execute(
        select(tables.offsets.c.topic, tables.offsets.c.partition, tables.offsets.c.next_offset)
        .where(tables.offsets.c.topic.in_(topics))
        .with_for_update()
    )
    return {(row[0], row[1]): row[2] for row in rows}


async def move_offsets(
    connection: AsyncConnection,
    tables: ProjectionTables,
    moved: dict[tuple[str, int], int],
    stored: dict[tuple[str, int], int],
) -> None:
    """Store the next offset of each partition the batch moved (updated if it was stored, else inserted)."""
    offsets = tables.offsets
    for (topic, partition), next_offset in moved.items():
        if (topic, partition) in stored:
            await connection.execute(
                update(offsets)
                .where(offsets.c.topic == topic, offsets.c.partition == partition)
                .values(next_offset=next_offset)
            )
        else:
            await connection.execute(insert(offsets).values(topic=topic, partition=partition, next_offset=next_offset))


async def load_requests(
    connection: AsyncConnection, tables: ProjectionTables, codes: list[str], working: Working
) -> Working:
    """Read into `working` the rows and timeline ids of the `codes` it has not read yet."""
    t = tables
    codes = [code for code in codes if code not in working.loaded]
    working.loaded.update(codes)
    for chunk in _chunks(codes):
        for row in await connection.execute(select(t.requests).where(t.requests.c.tracking_code.in_(chunk))):
            values = dict(row._mapping)
            working.records[values["tracking_code"]] = ProjectedRequest(**values)
            working.existing.add(values["tracking_code"])
        timeline = await connection.execute(
            select(t.timeline.c.tracking_code, t.timeline.c.event_id, t.timeline.c.seq).where(
                t.timeline.c.tracking_code.in_(chunk)
            )
        )
        for code, event_id, seq in timeline:
            working.seen.setdefault(code, set()).add(event_id)
            working.next_seq[code] = max(working.next_seq.get(code, 0), seq + 1)
    return working


def _row(record: ProjectedRequest) -> dict[str, Any]:
    return {name: getattr(record, name) for name in REQUEST_FIELDS}


async def write_batch(
    connection: AsyncConnection,
    tables: ProjectionTables,
    working: Working,
    entries: list[dict[str, Any]],
    outbox: list[OutboxRow],
    created_at: datetime | None,
) -> None:
    """Write the batch's new and changed requests, its timeline entries and its outbox rows (made `created_at`)."""
    t = tables
    new = [_row(working.records[code]) for code in sorted(working.dirty - working.existing)]
    changed = [{**_row(working.records[code]), "key_code": code} for code in sorted(working.dirty & working.existing)]
    if new:
        await connection.execute(insert(t.requests), new)
    if changed:
        await connection.execute(
            update(t.requests)
            .where(t.requests.c.tracking_code == bindparam("key_code"))
            .values({name: bindparam(name) for name in REQUEST_FIELDS if name != "tracking_code"}),
            changed,
        )
    if entries:
        await connection.execute(insert(t.timeline), entries)
    if outbox:
        await connection.execute(
            insert(OUTBOX_TABLE),
            [
                {
                    "topic": row.topic,
                    "key": row.key,
                    "value": row.value,
                    "headers": row.headers,
                    "trace_context": row.trace_context,
                    "created_at": created_at,
                    "published_at": None,
                }
                for row in outbox
            ],
        )

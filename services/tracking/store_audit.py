"""The access records' table (one hash chain per citizen) and its SQL: chain heads, appends, reads in seq order.

Each batch of appends runs in one transaction on one connection: one statement for the heads, one for the
records already stored, one executemany for the new rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import Column, Field, SQLModel, UniqueConstraint

from shared.db import UtcDateTime

from .domain_audit import AccessEntry, Head, Link
from .store import Sessions

# SQLite allows 32,766 bound parameters per statement: stay well below in IN (...) lists.
_IN_CHUNK = 500


class AccessRecordRow(SQLModel, table=True):
    """One access to a citizen's personal data, linked into that citizen's chain (domain_audit.py)."""

    __tablename__ = "access_record"
    # Redelivered records are stored once (the append skips known ids; the constraint catches a racing replica).
    __table_args__ = (UniqueConstraint("access_id", name="uq_access_record_access_id"),)

    # The citizen's subject digest (HMAC of the national ID under KHEDMAT_AUDIT_SUBJECT_KEY) and the place in
    # their chain: the primary key, so "newest first" and "in order" are index scans of one citizen.
    subject: str = Field(primary_key=True, max_length=64)
    seq: int = Field(primary_key=True)
    access_id: str = Field(max_length=36)
    actor_kind: str = Field(max_length=16)
    actor: str = Field(max_length=100)
    organisation: str = Field(max_length=100)
    role: str = Field(max_length=100)
    resource_kind: str = Field(max_length=16)
    resource: str = Field(max_length=100)
    purpose: str = Field(max_length=32)
    client: str = Field(max_length=64)
    occurred_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


ACCESS_TABLE: Table = AccessRecordRow.__table__  # type: ignore[attr-defined]
_ENTRY_COLUMNS = tuple(AccessEntry.__dataclass_fields__)


def _chunks(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[start : start + _IN_CHUNK] for start in range(0, len(items), _IN_CHUNK)]


async def heads_of(connection: AsyncConnection, subjects: Sequence[str]) -> dict[str, Head]:
    """The last link of each of these citizens' chains (a citizen without records has none)."""
    table = ACCESS_TABLE
    heads: dict[str, Head] = {}
    for chunk in _chunks(sorted(set(subjects))):
        last = (
            select(table.c.subject, func.max(table.c.seq).label("seq"))
            .where(table.c.subject.in_(chunk))
            .group_by(table.c.subject)
            .subquery()
        )
        rows = await connection.execute(
            select(table.c.subject, table.c.seq, table.c.hash).join(
                last, (table.c.subject == last.c.subject) & (table.c.seq == last.c.seq)
            )
        )
        heads.update({subject: Head(int(seq), str(digest)) for subject, seq, digest in rows.all()})
    return heads


async def stored_access_ids(connection: AsyncConnection, access_ids: Sequence[str]) -> set[str]:
    """Which of these records are stored already."""
    found: set[str] = set()
    for chunk in _chunks(sorted(set(access_ids))):
        rows = await connection.execute(select(ACCESS_TABLE.c.access_id).where(ACCESS_TABLE.c.access_id.in_(chunk)))
        found.update(str(access_id) for (access_id,) in rows.all())
    return found


def _row(link: Link) -> dict[str, Any]:
    entry = {name: getattr(link.entry, name) for name in _ENTRY_COLUMNS}
    return {**entry, "seq": link.seq, "prev_hash": link.prev_hash, "hash": link.hash}


async def insert_links(connection: AsyncConnection, links: Sequence[Link]) -> None:
    """Write new links, all in one executemany."""
    if links:
        await connection.execute(insert(ACCESS_TABLE), [_row(link) for link in links])


def _link(row: Any) -> Link:
    entry = AccessEntry(**{name: row._mapping[name] for name in _ENTRY_COLUMNS})
    return Link(int(row.seq), entry, str(row.prev_hash), str(row.hash))


async def chain_page(sessions: Sessions, subject: str, *, after_seq: int, limit: int) -> list[Link]:
    """Up to `limit` links of a citizen's chain past `after_seq`, in seq order."""
    table = ACCESS_TABLE
    async with sessions() as session:
        connection = await session.connection()
        rows = await connection.execute(
            select(table).where(table.c.subject == subject, table.c.seq > after_seq).order_by(table.c.seq).limit(limit)
        )
        return [_link(row) for row in rows.all()]


async def newest_page(sessions: Sessions, subject: str, *, before_seq: int | None, limit: int) -> list[Link]:
    """Up to `limit` links of a citizen's chain, newest first, before `before_seq` when given (keyset paging)."""
    table = ACCESS_TABLE
    query = select(table).where(table.c.subject == subject)
    if before_seq is not None:
        query = query.where(table.c.seq < before_seq)
    async with sessions() as session:
        connection = await session.connection()
        rows = await connection.execute(query.order_by(table.c.seq.desc()).limit(limit))
        return [_link(row) for row in rows.all()]

"""The rebuild's SQL: staging copies of the projection's tables, the swap that puts them in, the retired tables'
drop (the use case is service_rebuild.py)."""

from __future__ import annotations

import secrets

from sqlalchemy import MetaData, Table, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import quoted_name

from .store import LIVE_TABLES, ProjectionTables

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


class NotCaughtUp(Exception):
    """The live projection moved on between the check and the swap: fold more, try again."""


async def recreate(engine: AsyncEngine, tables: ProjectionTables) -> None:
    def drop_and_create(sync: Connection) -> None:
        for table in reversed(tables.all()):
            table.drop(sync, checkfirst=True)
        for table in tables.all():
            table.create(sync)

    async with engine.begin() as connection:
        await connection.run_sync(drop_and_create)


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

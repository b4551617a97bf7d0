"""Fresh databases for one test (or benchmark): an empty PostgreSQL database on a real server, dropped
afterwards, or a new SQLite file with a service's tables."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from shared.db import make_engine

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


async def _as_admin(base_url: str, statement: str) -> None:
    # CREATE/DROP DATABASE cannot run inside a transaction; NullPool: no connection outlives the statement.
    engine = create_async_engine(base_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


def _database_name(url: str) -> str:
    name = make_url(url).database or ""
    if not _NAME.match(name):
        raise ValueError(f"refusing an unexpected database name: {name!r}")
    return name


async def fresh_postgres_database(base_url: str, prefix: str = "khedmat_test") -> str:
    """Create a uniquely named, empty database on `base_url`'s server; return its URL (same user, host, driver)."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    if not _NAME.match(name):
        raise ValueError(f"refusing an unexpected database name: {name!r}")
    # template0: truly empty, and never "being accessed by other users" when tests create them concurrently.
    await _as_admin(base_url, f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'")
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


async def drop_postgres_database(base_url: str, database_url: str) -> None:
    """Drop the database `fresh_postgres_database` made, ending its open connections first (PostgreSQL 13+)."""
    name = _database_name(database_url)
    if name == _database_name(base_url):
        raise ValueError("refusing to drop the base database")
    await _as_admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def postgres_database(base_url: str, prefix: str = "khedmat_test") -> AsyncIterator[str]:
    """A fresh database for the duration of the block, dropped afterwards."""
    url = await fresh_postgres_database(base_url, prefix)
    try:
        yield url
    finally:
        await drop_postgres_database(base_url, url)


@contextlib.asynccontextmanager
async def sqlite_database(
    path: Path, make_tables: Callable[[AsyncEngine], Awaitable[None]]
) -> AsyncIterator[AsyncEngine]:
    """An engine on a new SQLite file at `path`, its tables made by `make_tables`; disposed of afterwards."""
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await make_tables(engine)
        yield engine
    finally:
        await engine.dispose()

"""Fresh, empty PostgreSQL databases on a real server, one per test (or benchmark), dropped afterwards."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterator

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _admin_engine(base_url: str) -> AsyncEngine:
    # CREATE/DROP DATABASE cannot run inside a transaction; NullPool: no connection outlives the statement.
    return create_async_engine(base_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


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
    engine = _admin_engine(base_url)
    try:
        async with engine.connect() as connection:
            # template0: truly empty, and never "being accessed by other users" when tests create them concurrently.
            await connection.execute(text(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'"))
    finally:
        await engine.dispose()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


async def drop_postgres_database(base_url: str, database_url: str) -> None:
    """Drop the database `fresh_postgres_database` made, ending its open connections first (PostgreSQL 13+)."""
    name = _database_name(database_url)
    if name == _database_name(base_url):
        raise ValueError("refusing to drop the base database")
    engine = _admin_engine(base_url)
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def postgres_database(base_url: str, prefix: str = "khedmat_test") -> AsyncIterator[str]:
    """A fresh database for the duration of the block, dropped afterwards."""
    url = await fresh_postgres_database(base_url, prefix)
    try:
        yield url
    finally:
        await drop_postgres_database(base_url, url)

"""Fixtures shared by every suite; the ones that start servers live here and in testkit/harness.py only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notify.store import Sessions, create_tables
from shared.db import make_sessionmaker
from shared.settings import KafkaSettings
from testkit.databases import postgres_database, sqlite_database
from testkit.infra import Servers, test_servers


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    """Real Kafka, Redis and PostgreSQL for the whole session (containers or local servers; see testkit/infra.py)."""
    with test_servers() as found:
        yield found


@pytest.fixture(scope="session")
def kafka_settings(servers: Servers) -> KafkaSettings:
    """Kafka settings pointing at the session's broker."""
    return KafkaSettings(bootstrap_servers=servers.kafka_bootstrap)


@pytest.fixture(scope="session")
def postgres_url(servers: Servers) -> str:
    """SQLAlchemy async URL (asyncpg) of the session's PostgreSQL base database; tests make their own from it."""
    return servers.postgres_url


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database of each backend the services support: a new SQLite file, or a new database on
    the session's PostgreSQL server (dropped afterwards, its connections ended first)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
        return
    # Asked for only here, so the SQLite variant needs no server.
    base_url: str = request.getfixturevalue("postgres_url")
    async with postgres_database(base_url) as url:
        yield url


async def _notify_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await create_tables(connection)


@pytest.fixture
async def notify_sessions(tmp_path: Path) -> AsyncIterator[Sessions]:
    """notify's tables in a fresh SQLite file (its own database in the unit tests and beside the sandbox)."""
    async with sqlite_database(tmp_path / "notify.db", _notify_tables) as engine:
        yield make_sessionmaker(engine)

"""The database fixtures give real servers: a SQLite file and a database on a real PostgreSQL server, both
reached through shared.db.make_engine like the services, with timezone-aware times kept exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, func, insert, select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import UtcDateTime, make_engine
from testkit.databases import drop_postgres_database, fresh_postgres_database

TEHRAN = timezone(timedelta(hours=3, minutes=30))

metadata = MetaData()
stamps = Table(
    "stamps",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UtcDateTime, nullable=False),
)


async def check_postgresql(connection: AsyncConnection) -> None:
    """A real server, new enough for DROP DATABASE … WITH (FORCE), and the database starts empty."""
    version = (await connection.execute(text("SHOW server_version_num"))).scalar_one()
    assert int(version) >= 130000
    tables = await connection.execute(
        text("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
    )
    assert tables.scalar_one() == 0


async def test_a_timezone_aware_datetime_round_trips(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        async with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                await check_postgresql(connection)
            else:
                assert engine.dialect.name == "sqlite"
                files = (await connection.execute(text("PRAGMA database_list"))).all()
                assert [row[2] for row in files if row[1] == "main"] == [database_url.split("///", 1)[1]]  # a file
                assert (await connection.execute(text("SELECT count(*) FROM sqlite_master"))).scalar_one() == 0
            await connection.run_sync(metadata.create_all)
        if engine.dialect.name == "postgresql":
            async with engine.connect() as connection:
                column_type = await connection.execute(
                    text(
                        "SELECT data_type FROM information_schema.columns"
                        " WHERE table_name = 'stamps' AND column_name = 'at'"
                    )
                )
                assert column_type.scalar_one() == "timestamp with time zone"

        moment = datetime(2025, 3, 20, 12, 30, 15, 123456, tzinfo=TEHRAN)
        async with engine.begin() as connection:
            await connection.execute(insert(stamps).values(id=1, at=moment))
        async with engine.connect() as connection:
            loaded = (await connection.execute(select(stamps.c.at).where(stamps.c.id == 1))).scalar_one()
            assert loaded == moment  # the same instant, microseconds included
            assert loaded.utcoffset() == timedelta(0)  # given back in UTC
            assert loaded == datetime(2025, 3, 20, 9, 0, 15, 123456, tzinfo=UTC)
            assert (await connection.execute(select(func.count()).select_from(stamps))).scalar_one() == 1

        with pytest.raises(StatementError, match="naive datetimes are refused"):
            async with engine.begin() as connection:
                await connection.execute(insert(stamps).values(id=2, at=datetime(2025, 3, 20, 12, 30)))
    finally:
        await engine.dispose()


async def test_a_fresh_database_is_dropped_even_with_a_connection_open(postgres_url: str) -> None:
    url = await fresh_postgres_database(postgres_url)
    name = url.rsplit("/", 1)[-1]
    held = make_engine(url)
    admin = make_engine(postgres_url)
    try:
        async with held.connect() as connection:
            assert (await connection.execute(text("SELECT current_database()"))).scalar_one() == name
            await connection.commit()
            await drop_postgres_database(postgres_url, url)  # ends this very connection first
        async with admin.connect() as connection:
            found = await connection.execute(text("SELECT count(*) FROM pg_database WHERE datname = :n"), {"n": name})
            assert found.scalar_one() == 0
    finally:
        await held.dispose()
        await admin.dispose()

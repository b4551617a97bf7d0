"""tracking's Alembic migrations, on SQLite and PostgreSQL: head is exactly the models' schema, migrating twice
changes nothing, and a database created from the models before migrations existed is adopted, not recreated."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from services.tracking.store import TABLES
from services.tracking.store_migrations import FIRST_REVISION_TABLES, METADATA, migrate
from shared.db import make_engine

pytestmark = pytest.mark.asyncio


def differences(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), METADATA))


async def test_head_is_the_models_schema_and_migrating_again_changes_nothing(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        await migrate(engine)
        await migrate(engine)
        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
            version = await connection.scalar(text("SELECT version_num FROM alembic_version"))
        assert version == "0003"
    finally:
        await engine.dispose()


async def test_a_database_made_from_the_models_is_adopted(database_url: str) -> None:
    # What the models made before migrations existed: the first revision's tables, nothing added since.
    first = [table for table in METADATA.sorted_tables if table.name in FIRST_REVISION_TABLES]
    assert len(first) == len(FIRST_REVISION_TABLES)
    engine = make_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(lambda sync: METADATA.create_all(sync, tables=first))
            await connection.execute(
                text("INSERT INTO consumed_offset (topic, partition, next_offset) VALUES ('desk.requests', 0, 42)")
            )
        await migrate(engine)
        async with engine.connect() as connection:
            kept = await connection.scalar(text("SELECT next_offset FROM consumed_offset"))
            names = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        assert kept == 42
        assert {table.name for table in TABLES} | {"alembic_version"} <= names
        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()

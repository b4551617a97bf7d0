"""tracking's schema, owned by Alembic: `migrate` brings any database (SQLite or PostgreSQL) to head at start.

A database made before migrations existed (tables created from store.py's models) is stamped at the first revision,
whose tables it already has, and migrated on from there.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from .store import TABLES
from .store_audit import ACCESS_TABLE

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
FIRST_REVISION = "0001"
METADATA = MetaData()
"""What the migrations must produce (a test compares the two): tracking's tables only."""
for _table in [*TABLES, ACCESS_TABLE]:
    _table.to_metadata(METADATA)
# What a database made before migrations existed holds: the first revision's tables, adopted by a stamp.
FIRST_REVISION_TABLES = frozenset({"request_status", "timeline_entry", "consumed_offset", "outbox"})


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    names = set(inspect(connection).get_table_names())
    config = alembic_config(connection)
    if "alembic_version" not in names and names >= FIRST_REVISION_TABLES:
        command.stamp(config, FIRST_REVISION)
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Upgrade the database to the latest revision (idempotent; safe with replicas starting together on PG)."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)

"""Alembic's environment for tracking: always given a live connection by services.tracking.store_migrations."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from services.tracking.store_migrations import METADATA

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=METADATA, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # Replicas starting together: one migrates, the others wait and then find nothing left to do.
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('khedmat-tracking-migrations'))"))
    context.run_migrations()

"""Fixtures several unit modules share (no servers: SQLite files in the test's own folder)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.notify.store import Sessions, create_tables
from shared.db import make_engine, make_sessionmaker


@pytest.fixture
async def notify_sessions(tmp_path: Path) -> AsyncIterator[Sessions]:
    """notify's tables in a fresh SQLite file."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/notify.db")
    async with engine.begin() as conn:
        await create_tables(conn)
    yield make_sessionmaker(engine)
    await engine.dispose()

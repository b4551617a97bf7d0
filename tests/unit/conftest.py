"""Fixtures several unit modules share (no servers: SQLite files in the test's own folder)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services.inquiry.store import Sessions, create_tables
from services.notify.adapters_templates import Renderer
from shared.catalog import load_catalog
from shared.db import make_sessionmaker
from testkit.databases import sqlite_database
from tests.asgi import asgi_client
from tests.unit.intake_fakes import FakePublish


@pytest.fixture
async def inquiry_sessions(tmp_path: Path) -> AsyncIterator[Sessions]:
    """inquiry's own database (it records each verification), in a fresh SQLite file."""
    async with sqlite_database(tmp_path / "inquiry.db", create_tables) as engine:
        yield make_sessionmaker(engine)


@pytest.fixture
def renderer() -> Renderer:
    """notify's messages, rendered from the catalog."""
    return Renderer(load_catalog())


@pytest.fixture
def publish() -> FakePublish:
    """intake's publish to Kafka, faked: it records what the module's `app` publishes."""
    return FakePublish()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the module's intake `app`, in memory."""
    async with asgi_client(app, "http://intake") as client:
        yield client

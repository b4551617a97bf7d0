"""Fixtures of the integration suite that more than one module uses."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from sandbox.runner import SandboxEndpoints
from shared.redis_client import make_redis
from testkit.infra import Servers


@pytest.fixture
def tag() -> str:
    """A name no other test (or earlier run) uses, so counters, budgets and records never collide."""
    return f"t-{uuid.uuid4().hex}"


@pytest.fixture
async def redis_client(servers: Servers, tag: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the session's Redis, built like the services'; this test's keys are deleted afterwards."""
    client = make_redis(servers.redis_url)
    yield client
    async for name in client.scan_iter(match=f"khedmat:*{tag}*"):
        await client.delete(name)
    await client.aclose()


@pytest.fixture
async def second_replica_redis(servers: Servers) -> AsyncIterator[aioredis.Redis]:
    """Another pool on the same Redis, as a second replica of a service would have."""
    client = make_redis(servers.redis_url)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[SandboxEndpoints]:
    """The sandbox's servers (agencies, SMS gateway, SMTP sink) in this process, on free ports."""
    from tests.integration.test_sandbox_serve import ephemeral_settings, start

    stop = asyncio.Event()
    task, endpoints = await start(ephemeral_settings(), stop)
    yield endpoints
    stop.set()
    await asyncio.wait_for(task, timeout=10)

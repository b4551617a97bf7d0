"""SMS failover against two real sandbox gateways (HTTP servers on loopback, Kavenegar-shaped API): with the
first one down, the second carries the SMS; once the first is back, traffic returns to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from sandbox.runner import SandboxEndpoints
from sandbox.sms_gateway import DEFAULT_API_KEY
from services.notify.adapters import FailoverSmsGateway, KavenegarSmsClient
from tests.integration.test_sandbox_serve import ephemeral_settings, start

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def two_sandboxes() -> AsyncIterator[tuple[SandboxEndpoints, SandboxEndpoints]]:
    stop = asyncio.Event()
    first_task, first = await start(ephemeral_settings(), stop)
    second_task, second = await start(ephemeral_settings(), stop)
    yield first, second
    stop.set()
    await asyncio.wait_for(asyncio.gather(first_task, second_task), timeout=10)


async def messages(url: str) -> list[dict[str, object]]:
    async with httpx.AsyncClient() as client:
        return list((await client.get(f"{url}/messages")).json())


async def test_the_second_gateway_carries_the_sms_while_the_first_is_down(
    two_sandboxes: tuple[SandboxEndpoints, SandboxEndpoints],
) -> None:
    first, second = two_sandboxes
    clients = [
        KavenegarSmsClient(base_url=endpoints.sms_url, api_key=DEFAULT_API_KEY, sender="1000", timeout_s=2)
        for endpoints in (first, second)
    ]
    now = [0.0]
    failover = FailoverSmsGateway(
        list(clients), names=["primary", "fallback"], retry_primary_s=60, clock=lambda: now[0]
    )
    async with httpx.AsyncClient() as control:
        await control.put(f"{first.sms_url}/control/faults", json={"down": True})
        await failover.send(receptor="09121234567", message="پیام ۱", local_id="1")
        await failover.send(receptor="09121234567", message="پیام ۲", local_id="2")
        assert [m["message"] for m in await messages(second.sms_url)] == ["پیام ۱", "پیام ۲"]
        assert await messages(first.sms_url) == []

        await control.delete(f"{first.sms_url}/control/faults")
        now[0] = 61.0
        await failover.send(receptor="09121234567", message="پیام ۳", local_id="3")
    assert [m["message"] for m in await messages(first.sms_url)] == ["پیام ۳"]
    assert len(await messages(second.sms_url)) == 2
    await failover.aclose()

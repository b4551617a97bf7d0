"""Provider pacing without Redis: a dead Redis makes each process keep the same window on its own."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shared.rate_limits import PacedRate
from shared.redis_client import make_redis


async def test_a_dead_redis_paces_per_process(caplog: pytest.LogCaptureFixture) -> None:
    client = make_redis("redis://127.0.0.1:1/0")  # a closed port: every call is refused at once
    try:
        pacer = PacedRate(client, limit="3/second", name="sms-primary")
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                await asyncio.wait_for(pacer.acquire(), 5)
        # The fourth waits for the window to move (a lower bound: no machine is too fast for it).
        waiting = asyncio.create_task(pacer.acquire())
        done, _ = await asyncio.wait({waiting}, timeout=0.1)
        assert not done
        await asyncio.wait_for(waiting, 5)
        assert [record.getMessage() for record in caplog.records] == [
            "pacing sms-primary per process: Redis failed (ConnectionError)"
        ]
    finally:
        await client.aclose()


def test_one_rate_per_provider() -> None:
    client = make_redis("redis://127.0.0.1:1/0")
    with pytest.raises(ValueError, match="one rate per service"):
        PacedRate(client, limit="3/second;100/minute", name="x")
    with pytest.raises(ValueError):
        PacedRate(client, limit="fast", name="x")


async def test_a_failing_redis_is_retried_now_and_then_not_on_every_send() -> None:
    client = make_redis("redis://127.0.0.1:1/0")
    try:
        pacer = PacedRate(client, limit="1000/second", name="smtp")
        calls = 0

        async def failing_hit(*args: object, **kwargs: object) -> bool:
            nonlocal calls
            calls += 1
            raise ConnectionError("redis is away")

        pacer._shared.hit = failing_hit  # type: ignore[method-assign]
        for _ in range(5):
            await pacer.acquire()
        assert calls == 1  # the other four went straight to the per-process window
        assert pacer._degraded_since is not None
        pacer._degraded_since -= pacer.retry_shared_every_s
        await pacer.acquire()
        assert calls == 2  # tried again once the interval passed
    finally:
        await client.aclose()

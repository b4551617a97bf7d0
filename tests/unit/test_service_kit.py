"""The service kit (shared/service_kit.py): a service's app in one call, and the lifespan of its parts."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Any, cast

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from opentelemetry.sdk.trace import TracerProvider

from shared.db import make_engine
from shared.http import ProblemError
from shared.service_kit import (
    Part,
    build_service_app,
    closing,
    database_check,
    lifespan_of,
    state_dependency,
    supervised,
)
from shared.settings import HttpEdgeSettings
from tests.asgi import asgi_client
from tests.problems import assert_problem


class Refused(Exception):
    """A use case's failure, for the app's failure handler."""


class Counter:
    """A dependency the composition root puts on app.state."""

    def __init__(self) -> None:
        self.calls = 0


router = APIRouter(prefix="/api/v1")


@router.get("/count")
async def count(counter: Annotated[Counter, Depends(state_dependency("counter", Counter))]) -> dict[str, int]:
    counter.calls += 1
    return {"calls": counter.calls}


@router.get("/refuse")
async def refuse() -> dict[str, int]:
    raise Refused("no")


class DeadRedis:
    """Answers no ping."""

    async def ping(self) -> bool:
        raise ConnectionError("down")


class DeadEngine:
    """A database that cannot be reached."""

    def connect(self) -> Any:
        raise ConnectionError("down")


def _app(**kit: Any) -> FastAPI:
    return build_service_app(
        service="kit",
        title="Kit",
        description="A service built by the kit.",
        version="0",
        http=HttpEdgeSettings(),
        tracer_provider=TracerProvider(),
        routers=[router],
        failures={
            Refused: lambda error: ProblemError(
                status=409, slug="refused", title_en=f"Refused: {error}", title_fa="پذیرفته نشد"
            )
        },
        state={"counter": Counter()},
        **kit,
    )


async def _get(app: FastAPI, path: str) -> httpx.Response:
    async with asgi_client(app, "http://kit") as client:
        return await client.get(path)


async def test_the_app_answers_its_routes_with_the_edges_and_operations_routes() -> None:
    app = _app()
    response = await _get(app, "/api/v1/count")
    assert response.json() == {"calls": 1}
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert (await _get(app, "/healthz")).json() == {"status": "ok", "service": "kit"}
    assert (await _get(app, "/metrics")).status_code == 200


async def test_a_use_case_failure_is_answered_by_the_registered_problem() -> None:
    problem = assert_problem(await _get(_app(), "/api/v1/refuse"), 409)
    assert problem["title"] == "Refused: no"


async def test_redis_down_degrades_readiness_and_a_dead_database_fails_it() -> None:
    body = (await _get(_app(redis=cast(Any, DeadRedis())), "/readyz")).json()
    assert body == {"ready": True, "checks": {}, "degraded": ["redis"]}
    response = await _get(_app(database=cast(Any, DeadEngine())), "/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": False}


async def test_a_live_database_is_ready(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/kit.db")
    assert await database_check(engine)()
    await engine.dispose()


def test_a_wrong_state_entry_is_a_type_error() -> None:
    app = _app()
    app.state.counter = "not a counter"
    with pytest.raises(TypeError, match=r"app\.state\.counter"):
        state_dependency("counter", Counter)(cast(Any, type("Request", (), {"app": app})()))


async def test_parts_start_in_order_and_stop_in_reverse() -> None:
    seen: list[str] = []

    async def stop_b() -> None:
        seen.append("stop b")

    parts = [
        Part("a", start=lambda: seen.append("start a"), stop=lambda: seen.append("stop a")),
        Part("b", stop=stop_b),
        closing("c", lambda: seen.append("stop c")),
    ]
    async with lifespan_of(parts)(FastAPI()):
        assert seen == ["start a"]
    assert seen == ["start a", "stop c", "stop b", "stop a"]


async def test_a_failing_stop_is_logged_and_the_others_still_stop(caplog: pytest.LogCaptureFixture) -> None:
    stopped: list[str] = []

    async def broken() -> None:
        raise RuntimeError("stuck")

    parts = [closing("first", lambda: stopped.append("first")), closing("broken", broken)]
    with caplog.at_level(logging.ERROR, logger="shared.service_kit"):
        async with lifespan_of(parts)(FastAPI()):
            pass
    assert stopped == ["first"]
    assert "stopping broken failed" in caplog.text


async def test_a_part_that_fails_to_start_stops_the_ones_started_before() -> None:
    stopped: list[str] = []

    def fail() -> None:
        raise RuntimeError("no start")

    parts = [closing("first", lambda: stopped.append("first")), Part("second", start=fail)]
    with pytest.raises(RuntimeError, match="no start"):
        async with lifespan_of(parts)(FastAPI()):
            pass
    assert stopped == ["first"]


async def test_a_supervised_loop_is_restarted_with_a_log_and_cancelled_at_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = 0
    running = asyncio.Event()
    gate = asyncio.Event()

    async def work() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError(f"run {runs} failed")
        running.set()
        await asyncio.sleep(3600)

    async def when() -> None:
        await gate.wait()

    part = supervised("sweeper", work, restart_after_s=0.01, when=when)
    with caplog.at_level(logging.ERROR, logger="shared.service_kit"):
        async with lifespan_of([part])(FastAPI()):
            await asyncio.sleep(0.02)
            assert runs == 0  # waits for `when`
            gate.set()
            await asyncio.wait_for(running.wait(), 2)
    assert runs == 3
    assert caplog.text.count("sweeper failed; restarting") == 2


async def test_a_supervised_loop_still_waiting_for_the_bus_is_cancelled_at_stop() -> None:
    # tracking's outbox relay and SLA watcher wait for Kafka: a service stopped before it connects must still stop.
    connected = asyncio.Event()
    ran = False

    async def work() -> None:
        nonlocal ran
        ran = True

    part = supervised("outbox-relay", work, when=connected.wait)
    async with lifespan_of([part])(FastAPI()):
        await asyncio.sleep(0.01)
    assert not ran
    connected.set()
    await asyncio.sleep(0.01)
    assert not ran  # cancelled, not merely parked


async def test_a_supervised_loop_that_crashes_after_the_bus_connected_restarts_without_waiting_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A crashed outbox relay left dead would stop StatusChanged being published until the pod restarts.
    connected = asyncio.Event()
    connected.set()
    waits = 0
    runs = 0
    restarted = asyncio.Event()

    async def when() -> None:
        nonlocal waits
        waits += 1
        await connected.wait()

    async def work() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("relay crashed")
        restarted.set()
        await asyncio.sleep(3600)

    with caplog.at_level(logging.ERROR, logger="shared.service_kit"):
        async with lifespan_of([supervised("outbox-relay", work, restart_after_s=0.01, when=when)])(FastAPI()):
            await asyncio.wait_for(restarted.wait(), 2)
    assert (waits, runs) == (1, 2)
    assert "outbox-relay failed; restarting" in caplog.text

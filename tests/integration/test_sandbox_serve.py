"""The sandbox servers running for real: sockets, one shared loop, clean shutdown and `python -m sandbox`."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import aiosmtplib
import httpx
import pytest

from sandbox.runner import SandboxEndpoints, serve_sandbox
from sandbox.settings import SandboxSettings
from tests.unit.test_sandbox import mail

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

REPO_ROOT = Path(__file__).resolve().parents[2]
IDENTITY = "/civil-registry/v1/identity"
IDENTITY_BODY = {"national_id": "0012345679", "birth_date": "1990-01-31"}


def ephemeral_settings(**overrides: object) -> SandboxSettings:
    values: dict[str, object] = {
        "agencies_port": 0,
        "sms_port": 0,
        "smtp_port": 0,
        "smtp_http_port": 0,
        "shutdown_grace_s": 1,
        **overrides,
    }
    return SandboxSettings.model_validate(values)


async def start(settings: SandboxSettings, stop: asyncio.Event) -> tuple[asyncio.Task[None], SandboxEndpoints]:
    ready: asyncio.Future[SandboxEndpoints] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_sandbox(settings, stop=stop, on_ready=ready.set_result))
    async with asyncio.timeout(10):
        while not ready.done():
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    return task, ready.result()


async def test_every_server_answers_on_its_own_port(sandbox: SandboxEndpoints) -> None:
    async with httpx.AsyncClient() as client:
        for url in (sandbox.agencies_url, sandbox.sms_url, sandbox.smtp_http_url):
            assert (await client.get(f"{url}/healthz")).json() == {"status": "ok"}
    smtp = aiosmtplib.SMTP(hostname=sandbox.smtp_host, port=sandbox.smtp_port)
    await smtp.connect()
    code, _ = await smtp.ehlo()
    await smtp.quit()

    assert len({sandbox.agencies_url, sandbox.sms_url, sandbox.smtp_http_url}) == 3
    assert code == 250


async def test_drop_fault_closes_the_connection_of_a_real_client(
    sandbox: SandboxEndpoints, caplog: pytest.LogCaptureFixture
) -> None:
    async with httpx.AsyncClient(base_url=sandbox.agencies_url) as client:
        await client.put("/control/faults/civil-registry", json={"drop_rate": 1.0})
        with caplog.at_level(logging.ERROR), pytest.raises(httpx.RemoteProtocolError):
            await client.post(IDENTITY, json=IDENTITY_BODY)
        await client.delete("/control/faults")
        after = await client.post(IDENTITY, json=IDENTITY_BODY)

    assert after.status_code == 200
    # Deliberate drops are expected behaviour, not server errors worth a traceback.
    assert "Exception in ASGI application" not in caplog.text


async def test_down_agency_answers_503_over_the_network(sandbox: SandboxEndpoints) -> None:
    async with httpx.AsyncClient(base_url=sandbox.agencies_url) as client:
        await client.put("/control/faults/civil-registry", json={"down": True})
        response = await client.post(IDENTITY, json=IDENTITY_BODY)
        stats = (await client.get("/control/stats")).json()

    assert response.status_code == 503
    assert stats["civil-registry"]["calls"] == 1


async def test_mail_sent_over_smtp_is_listed_over_http(sandbox: SandboxEndpoints) -> None:
    message = mail("نتیجه در پیشخوان خدمت قابل مشاهده است.", subject="پرونده شما بررسی شد", to="citizen@example.ir")

    await aiosmtplib.send(message, hostname=sandbox.smtp_host, port=sandbox.smtp_port)
    async with httpx.AsyncClient(base_url=sandbox.smtp_http_url) as client:
        messages = (await client.get("/messages")).json()

    assert [m["subject"] for m in messages] == ["پرونده شما بررسی شد"]
    assert messages[0]["text"].strip() == "نتیجه در پیشخوان خدمت قابل مشاهده است."


async def test_sms_sent_over_http_is_listed(sandbox: SandboxEndpoints) -> None:
    async with httpx.AsyncClient(base_url=sandbox.sms_url) as client:
        sent = await client.post(
            "/v1/sandbox-sms-key/sms/send.json", data={"receptor": "09121234567", "message": "سلام"}
        )
        messages = (await client.get("/messages")).json()

    assert sent.status_code == 200
    assert [m["message"] for m in messages] == ["سلام"]


async def test_stop_ends_serving_promptly_despite_a_stalled_request() -> None:
    stop = asyncio.Event()
    task, endpoints = await start(ephemeral_settings(fault_timeout_s=30), stop)
    async with httpx.AsyncClient(base_url=endpoints.agencies_url, timeout=60) as client:
        await client.put("/control/faults/civil-registry", json={"timeout_rate": 1.0})
        stalled = asyncio.create_task(client.post(IDENTITY, json=IDENTITY_BODY))
        await asyncio.sleep(0.3)

        started = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        elapsed = time.monotonic() - started
        [outcome] = await asyncio.gather(stalled, return_exceptions=True)

    assert elapsed < 5
    # uvicorn cancels the stalled call after the grace period and answers 500, as a dying server might.
    assert isinstance(outcome, httpx.HTTPError) or (isinstance(outcome, httpx.Response) and outcome.status_code == 500)


async def test_serving_fails_fast_when_a_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = ephemeral_settings(sms_port=taken.getsockname()[1])

        with pytest.raises(OSError):
            await asyncio.wait_for(serve_sandbox(settings, stop=asyncio.Event()), timeout=10)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_python_m_sandbox_serves_until_signalled(sig: signal.Signals) -> None:
    env = {
        **os.environ,
        "SANDBOX_AGENCIES_PORT": "0",
        "SANDBOX_SMS_PORT": "0",
        "SANDBOX_SMTP_PORT": "0",
        "SANDBOX_SMTP_HTTP_PORT": "0",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbox", cwd=REPO_ROOT, env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert process.stderr is not None
        line = (await asyncio.wait_for(process.stderr.readline(), timeout=20)).decode()
        urls = dict(re.findall(r"(\w+)=(\S+)", line))
        async with httpx.AsyncClient() as client:
            for name in ("agencies", "sms", "smtp_http"):
                assert (await client.get(f"{urls[name]}/healthz")).status_code == 200
        smtp_host, smtp_port = urls["smtp"].rsplit(":", 1)
        smtp = aiosmtplib.SMTP(hostname=smtp_host, port=int(smtp_port))
        await smtp.connect()
        await smtp.quit()

        process.send_signal(sig)
        returncode = await asyncio.wait_for(process.wait(), timeout=15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert line.startswith("sandbox ready:")
    assert returncode == 0

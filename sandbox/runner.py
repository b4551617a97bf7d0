"""Runs every sandbox server together on one asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from sandbox._common import bind_tcp_socket, socket_port, url_host
from sandbox.agencies import create_agencies_app
from sandbox.faults import FaultRegistry
from sandbox.settings import SandboxSettings
from sandbox.sms_gateway import create_sms_gateway_app
from sandbox.smtp_sink import MailStore, SmtpSink, create_smtp_sink_http_app


@dataclass(frozen=True)
class SandboxEndpoints:
    """Where the running sandbox servers can be reached (actual ports, also when 0 was asked for)."""

    agencies_url: str
    sms_url: str
    smtp_host: str
    smtp_port: int
    smtp_http_url: str


class _Server(uvicorn.Server):
    """uvicorn server that leaves signals to its owner and announces when it accepts connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()

    # uvicorn would install its own SIGINT/SIGTERM handlers per server and re-raise the signal on exit;
    # with several servers in one loop they overwrite each other, so serve_sandbox's caller owns signals.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _all_ready(servers: list[_Server]) -> None:
    for server in servers:
        await server.ready.wait()


def _sandbox_apps(settings: SandboxSettings, store: MailStore) -> list[tuple[FastAPI, int]]:
    """Each sandbox HTTP app with the port it asks for: agencies, SMS gateway, SMTP sink's HTTP side."""
    return [
        (
            create_agencies_app(faults=FaultRegistry(seed=settings.fault_seed, timeout_s=settings.fault_timeout_s)),
            settings.agencies_port,
        ),
        (
            create_sms_gateway_app(
                api_keys=set(settings.sms_api_keys),
                receipt_url=settings.sms_receipt_url,
                seed=settings.fault_seed,
            ),
            settings.sms_port,
        ),
        (create_smtp_sink_http_app(store), settings.smtp_http_port),
    ]


def _bind_all(host: str, ports: list[int]) -> list[socket.socket]:
    """A bound socket per port, or none at all: a taken port fails fast with nothing half started."""
    sockets: list[socket.socket] = []
    try:
        for port in ports:
            sockets.append(bind_tcp_socket(host, port))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _http_server(app: FastAPI, sock: socket.socket, settings: SandboxSettings) -> _Server:
    """A quiet uvicorn server for app on the already bound sock."""
    return _Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=socket_port(sock),
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=settings.shutdown_grace_s,
        )
    )


def _endpoints(settings: SandboxSettings, sockets: list[socket.socket], smtp: SmtpSink) -> SandboxEndpoints:
    """Where the started servers listen, by the ports their sockets actually got."""
    host = url_host(settings.host)
    agencies, sms, smtp_http = (socket_port(sock) for sock in sockets)
    return SandboxEndpoints(
        agencies_url=f"http://{host}:{agencies}",
        sms_url=f"http://{host}:{sms}",
        smtp_host=settings.host,
        smtp_port=smtp.port,
        smtp_http_url=f"http://{host}:{smtp_http}",
    )


async def _serve_until_stop(
    servers: list[_Server],
    tasks: list[asyncio.Task[None]],
    stop: asyncio.Event,
    announce: Callable[[], None],
) -> None:
    """Wait for every server to be ready, announce it, then wait for `stop` or for a server to end."""
    stopped = asyncio.create_task(stop.wait())
    try:
        all_ready = asyncio.create_task(_all_ready(servers))
        await asyncio.wait([all_ready, *tasks], return_when=asyncio.FIRST_COMPLETED)
        all_ready.cancel()
        if not any(task.done() for task in tasks):
            announce()
        await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()


async def serve_sandbox(
    settings: SandboxSettings,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[SandboxEndpoints], None] | None = None,
) -> None:
    """Serve the agencies, the SMS gateway and the SMTP sink (SMTP and HTTP) until `stop` is set.

    Without `stop` it serves until cancelled. `on_ready` is called once every server accepts connections.
    Signals are not handled here; `python -m sandbox` turns SIGINT/SIGTERM into `stop`.
    """
    stop = stop if stop is not None else asyncio.Event()
    store = MailStore()
    apps = _sandbox_apps(settings, store)
    sockets = _bind_all(settings.host, [port for _, port in apps])
    smtp = SmtpSink(store, host=settings.host, port=settings.smtp_port)
    servers = [_http_server(app, sock, settings) for (app, _), sock in zip(apps, sockets, strict=True)]

    def announce() -> None:
        if on_ready is not None:
            on_ready(_endpoints(settings, sockets, smtp))

    tasks: list[asyncio.Task[None]] = []
    try:
        await smtp.start()
        tasks = [
            asyncio.create_task(server.serve(sockets=[sock]), name=f"sandbox-http-{socket_port(sock)}")
            for server, sock in zip(servers, sockets, strict=True)
        ]
        await _serve_until_stop(servers, tasks, stop, announce)
        ended = [task for task in tasks if task.done()]
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        await smtp.stop()
        for sock in sockets:
            sock.close()
    # A server that ended before it was told to stop has failed; say so rather than return quietly.
    if ended and not stop.is_set():
        error = ended[0].exception()
        raise RuntimeError(f"sandbox server {ended[0].get_name()} exited unexpectedly") from error

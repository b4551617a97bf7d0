"""Running a service process: JSON logs, the process-wide tracer provider, uvicorn, clean shutdown."""

from __future__ import annotations

from collections.abc import Callable

import uvicorn
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from shared.settings import DeploymentSettings
from shared.telemetry import configure_logging, install_global_tracer_provider, make_tracer_provider


def run_service(name: str, build: Callable[[TracerProvider], FastAPI], host: str, port: int) -> None:
    """Run one service until SIGTERM/SIGINT; spans are flushed on the way out."""
    configure_logging(name)
    provider = make_tracer_provider(name, deployment=DeploymentSettings())
    install_global_tracer_provider(provider)
    app = build(provider)
    try:
        uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
    finally:
        provider.shutdown()

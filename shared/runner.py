"""Running a service process: JSON logs, the process-wide tracer provider, uvicorn, clean shutdown."""

from __future__ import annotations

from collections.abc import Callable

import uvicorn
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from shared.metrics_export import start_metrics_export
from shared.settings import DeploymentSettings
from shared.telemetry import configure_logging, install_global_tracer_provider, make_tracer_provider, service_resource


def run_service(name: str, build: Callable[[TracerProvider], FastAPI], host: str, port: int) -> None:
    """Run one service until SIGTERM/SIGINT; spans and metrics are flushed on the way out."""
    configure_logging(name)
    deployment = DeploymentSettings()
    provider = make_tracer_provider(name, deployment=deployment)
    install_global_tracer_provider(provider)
    app = build(provider)
    # After build: every module's Prometheus collectors are registered by now, so all are bridged.
    meters = start_metrics_export(service_resource(name, deployment))
    try:
        uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
    finally:
        provider.shutdown()
        if meters is not None:
            meters.shutdown()

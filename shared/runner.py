"""Running a service process: JSON logs, the process-wide tracer provider, uvicorn, clean shutdown.

A stop (SIGTERM, or SIGINT from Ctrl-C) must finish within the supervisor's grace period, honcho's 5 s under
`make run` (Kubernetes gives 30 s): in-flight requests get `HTTP_GRACE_S` (an open Server-Sent Events stream
would otherwise hold the server forever), the lifespan's consumers drain within their own stop budget, and
the last spans and metrics get `TELEMETRY_FLUSH_S` (a collector that is gone would otherwise be retried for
the exporter's full timeout).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from shared.metrics_export import start_metrics_export
from shared.settings import DeploymentSettings
from shared.telemetry import configure_logging, install_global_tracer_provider, make_tracer_provider, service_resource

HTTP_GRACE_S = 1
TELEMETRY_FLUSH_S = 1.0

log = logging.getLogger(__name__)


def shutdown_telemetry(
    provider: TracerProvider, meters: MeterProvider | None, *, budget_s: float = TELEMETRY_FLUSH_S
) -> bool:
    """Flush and close the providers within `budget_s`; False when they did not finish (what was left unsent is
    dropped: the exporting threads are daemons and end with the process)."""

    def close() -> None:
        provider.shutdown()
        if meters is not None:
            meters.shutdown(timeout_millis=budget_s * 1000)

    closing = threading.Thread(target=close, name="telemetry-shutdown", daemon=True)
    closing.start()
    closing.join(budget_s)
    if closing.is_alive():
        log.warning("telemetry not flushed within %.1fs (is the collector gone?); the rest is dropped", budget_s)
        return False
    return True


def run_service(name: str, build: Callable[[TracerProvider], FastAPI], host: str, port: int) -> None:
    """Run one service until SIGTERM/SIGINT; spans and metrics are flushed (bounded) on the way out."""
    configure_logging(name)
    deployment = DeploymentSettings()
    provider = make_tracer_provider(name, deployment=deployment)
    install_global_tracer_provider(provider)
    app = build(provider)
    # After build: every module's Prometheus collectors are registered by now, so all are bridged.
    meters = start_metrics_export(service_resource(name, deployment))
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=HTTP_GRACE_S,
        )
    finally:
        shutdown_telemetry(provider, meters)

"""OpenTelemetry bootstrap, JSON logs with personal data masked, and the HTTP health/metrics edges.

Traces follow one request across HTTP and Kafka: FastAPI and httpx are instrumented per app/client, and
faststream's KafkaTelemetryMiddleware (not the aiokafka instrumentation too: together they duplicate spans)
writes and reads the W3C `traceparent` header. OTLP export is configured by the standard OTEL_* variables;
nothing is exported when they are unset, or when OTEL_TRACES_EXPORTER names no `otlp` (e.g. `none`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from shared.settings import DeploymentSettings

# A national ID is 10 digits, a mobile 09 + 9 digits (or +98 9…): mask any such run wherever it appears.
_MOBILE = re.compile(r"(?<!\d)(?:\+98|0098|98|0)?(9\d{2})\d{5}(\d{2})(?!\d)")
_NATIONAL_ID = re.compile(r"(?<!\d)(\d{3})\d{6}(\d)(?!\d)")


def mask_personal_data(text: str) -> str:
    """Mask national IDs and mobile numbers in free text (logs, exception messages)."""
    text = _MOBILE.sub(lambda m: f"0{m.group(1)}*****{m.group(2)}", text)
    return _NATIONAL_ID.sub(lambda m: f"{m.group(1)}******{m.group(2)}", text)


def otlp_exporter_selected(variable: str) -> bool:
    """True when OTEL_TRACES_EXPORTER/OTEL_METRICS_EXPORTER (a comma-separated list, `otlp` when unset) names
    `otlp`; `none` and the exporters this code does not ship (console, prometheus …) push nothing over OTLP.
    An empty value counts as unset, as the specification says."""
    names = {name.strip().lower() for name in (os.environ.get(variable) or "otlp").split(",")}
    return "otlp" in names and "none" not in names


def otlp_configured() -> bool:
    """True when the standard OTEL_* variables name an OTLP endpoint for traces and do not turn traces off."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return bool(endpoint) and otlp_exporter_selected("OTEL_TRACES_EXPORTER")


def service_resource(service_name: str, deployment: DeploymentSettings | None = None) -> Resource:
    """The resource every span and metric of a service carries: its name, version and deployment."""
    deployment = deployment or DeploymentSettings()
    return Resource.create(
        {
            "service.name": service_name,
            "service.namespace": "khedmat",
            "service.version": deployment.service_version,
            "deployment.environment.name": deployment.deployment_environment,
        }
    )


def make_tracer_provider(
    service_name: str,
    *,
    deployment: DeploymentSettings | None = None,
    extra_processors: list[SpanProcessor] | None = None,
) -> TracerProvider:
    """A tracer provider naming the service, version and deployment; OTLP export only when configured."""
    provider = TracerProvider(resource=service_resource(service_name, deployment))
    if otlp_configured():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    for processor in extra_processors or []:
        provider.add_span_processor(processor)
    return provider


def install_global_tracer_provider(provider: TracerProvider) -> None:
    """Make `provider` the process-wide default (a service process has exactly one)."""
    trace.set_tracer_provider(provider)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line with trace ids and the service name; personal data masked."""

    def __init__(self, service_name: str) -> None:
        super().__init__()
        self.service_name = service_name

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service": self.service_name,
            "logger": record.name,
            "message": mask_personal_data(record.getMessage()),
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
        tracking_code = getattr(record, "tracking_code", None)
        if tracking_code:
            entry["tracking_code"] = tracking_code
        if record.exc_info:
            entry["exception"] = mask_personal_data(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(service_name: str, level: str | None = None) -> None:
    """JSON lines on stderr for the whole process (uvicorn's and faststream's loggers included)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter(service_name))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("KHEDMAT_LOG_LEVEL", "INFO"))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "aiokafka", "faststream"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # aiokafka is chatty at INFO about every rebalance; warnings still come through.
    logging.getLogger("aiokafka").setLevel("WARNING")
    logging.getLogger("uvicorn.access").setLevel("WARNING")

"""OpenTelemetry bootstrap, JSON logs with personal data masked, and the HTTP health/metrics edges.

Traces follow one request across HTTP and Kafka: FastAPI and httpx are instrumented per app/client, and
faststream's KafkaTelemetryMiddleware (not the aiokafka instrumentation too: together they duplicate spans)
writes and reads the W3C `traceparent` header. OTLP export is configured by the standard OTEL_* variables;
nothing is exported when they are unset, or when OTEL_TRACES_EXPORTER names no `otlp` (e.g. `none`).

Every span processor of every provider built here sees each ended span through `scrubbed_span`: URL attributes
with personal-data-looking path segments and query values replaced by `{redacted}`, exception texts masked,
and the Kafka key as plain text whichever instrumentation recorded it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import Attributes

from shared.settings import DeploymentSettings

# A national ID is 10 digits, a mobile 09 + 9 digits (or +98 9…): mask any such run wherever it appears.
_MOBILE = re.compile(r"(?<!\d)(?:\+98|0098|98|0)?(9\d{2})\d{5}(\d{2})(?!\d)")
_NATIONAL_ID = re.compile(r"(?<!\d)(\d{3})\d{6}(\d)(?!\d)")


def mask_personal_data(text: str) -> str:
    """Mask national IDs and mobile numbers in free text (logs, exception messages)."""
    text = _MOBILE.sub(lambda m: f"0{m.group(1)}*****{m.group(2)}", text)
    return _NATIONAL_ID.sub(lambda m: f"{m.group(1)}******{m.group(2)}", text)


REDACTED: Final = "{redacted}"

# Span attributes holding a URL or a part of one, under the old and the stable HTTP semantic conventions.
_FULL_URL_ATTRIBUTES: Final = frozenset({"http.url", "url.full", "url.original"})
_PATH_ATTRIBUTES: Final = frozenset({"url.path", "http.route"})
_TARGET_ATTRIBUTES: Final = frozenset({"http.target"})
_QUERY_ATTRIBUTES: Final = frozenset({"url.query"})
_EXCEPTION_TEXT_ATTRIBUTES: Final = frozenset({"exception.message", "exception.stacktrace"})
KAFKA_KEY_ATTRIBUTE: Final = "messaging.kafka.message.key"

# Query parameters whose value is personal data or a secret whatever it looks like (compared lower-case, _ for -).
SENSITIVE_QUERY_KEYS: Final = frozenset(
    {
        "national_id",
        "nationalid",
        "national_code",
        "nid",
        "code_melli",
        "mobile",
        "phone",
        "msisdn",
        "receptor",
        "email",
        "mail",
        "birth_date",
        "birthdate",
        "dob",
        "postal_code",
        "postalcode",
        "postcode",
        "zip",
        "password",
        "token",
        "api_key",
        "apikey",
        "secret",
        "signature",
    }
)
# Python's \d is Unicode-aware: these match Latin, Persian (۰-۹) and Arabic-Indic (٠-٩) digits alike. Five or more
# digits in a row covers national IDs, mobiles, postal codes, compact dates, and tracking codes: a rule over a URL
# cannot tell a 15-digit tracking code from a national ID, so both go (the code stays in the Kafka key attribute).
_LONG_DIGIT_RUN: Final = re.compile(r"\d{5,}")
_DATE: Final = re.compile(r"\d{2,4}[-/.]\d{1,2}[-/.]\d{1,2}")
# A Jalali or ISO date written with slashes spans three path segments.
_SLASHED_DATE_IN_PATH: Final = re.compile(r"(?<=/)\d{2,4}/\d{1,2}/\d{1,2}(?=/|$)")


def looks_personal(text: str) -> bool:
    """Whether a decoded URL segment or query value may be personal data: a long digit run, an email, a date."""
    return "@" in text or _LONG_DIGIT_RUN.search(text) is not None or _DATE.search(text) is not None


def scrub_url_path(path: str) -> str:
    """A URL path with each segment that looks like personal data replaced by `{redacted}`."""
    path = _SLASHED_DATE_IN_PATH.sub(REDACTED, path)
    return "/".join(REDACTED if looks_personal(unquote(segment)) else segment for segment in path.split("/"))


def scrub_url_query(query: str) -> str:
    """A query string with the values of sensitive keys, and values that look like personal data, redacted."""
    scrubbed = []
    for pair in query.split("&"):
        raw_key, equals, raw_value = pair.partition("=")
        key = unquote_plus(raw_key)
        if looks_personal(key):
            scrubbed.append(REDACTED)
        elif equals and (
            key.lower().replace("-", "_") in SENSITIVE_QUERY_KEYS or looks_personal(unquote_plus(raw_value))
        ):
            scrubbed.append(f"{raw_key}={REDACTED}")
        else:
            scrubbed.append(pair)
    return "&".join(scrubbed)


def scrub_url(url: str) -> str:
    """A full URL scrubbed: path and query as above, credentials and fragment dropped (never telemetry)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, scrub_url_path(parts.path), scrub_url_query(parts.query), ""))


def scrub_http_target(target: str) -> str:
    """A request target (`/path?query`) scrubbed."""
    path, question, query = target.partition("?")
    return scrub_url_path(path) + (question + scrub_url_query(query) if question else "")


def kafka_key_text(key: Any) -> Any:
    """A Kafka key as text: faststream records the raw bytes (which OTLP sends as bytes, shown base64 in Jaeger),
    the hand-written consumers the decoded string; one rendering lets one tag search find both."""
    return key.decode("utf-8", errors="replace") if isinstance(key, bytes | bytearray) else key


def _scrub_attribute(name: str, value: Any) -> Any:
    if name == KAFKA_KEY_ATTRIBUTE:
        return kafka_key_text(value)
    if not isinstance(value, str):
        return value
    if name in _FULL_URL_ATTRIBUTES:
        return scrub_url(value)
    if name in _PATH_ATTRIBUTES:
        return scrub_url_path(value)
    if name in _TARGET_ATTRIBUTES:
        return scrub_http_target(value)
    if name in _QUERY_ATTRIBUTES:
        return scrub_url_query(value)
    if name in _EXCEPTION_TEXT_ATTRIBUTES:
        return mask_personal_data(value)
    return value


def span_described_by_caller(
    tracer: trace.Tracer,
    name: str,
    *,
    kind: SpanKind,
    attributes: Attributes,
    context: Context | None = None,
) -> AbstractContextManager[trace.Span]:
    """A current span that records no exception and sets no status by itself: its caller describes a failure in
    words fit to leave the process (an exception's text may carry a citizen's data or a secret)."""
    return tracer.start_as_current_span(
        name,
        context=context,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    )


def _scrubbed_attributes(attributes: Mapping[str, Any] | None) -> BoundedAttributes | None:
    """The attributes scrubbed, keeping the dropped count; None when nothing changed."""
    if not attributes:
        return None
    scrubbed = {name: _scrub_attribute(name, value) for name, value in attributes.items()}
    if scrubbed == dict(attributes):
        return None
    bounded = BoundedAttributes(maxlen=None, attributes=scrubbed, immutable=True)
    bounded.dropped = getattr(attributes, "dropped", 0)
    return bounded


# What a ReadableSpan is built from besides its attributes, events and status: copied as they are.
_UNSCRUBBED_SPAN_PARTS = (
    "name",
    "context",
    "parent",
    "resource",
    "links",
    "kind",
    "start_time",
    "end_time",
    "instrumentation_scope",
)


def scrubbed_span(span: ReadableSpan) -> ReadableSpan:
    """The span as it may leave the process (see the module docstring); the same object when already clean."""
    attributes = _scrubbed_attributes(span.attributes)
    events: list[Event] = []
    events_changed = False
    for event in span.events:
        event_attributes = _scrubbed_attributes(event.attributes)
        events_changed |= event_attributes is not None
        events.append(
            event
            if event_attributes is None
            else Event(event.name, attributes=event_attributes, timestamp=event.timestamp)
        )
    status = span.status
    if status.description and (masked := mask_personal_data(status.description)) != status.description:
        status = Status(StatusCode.ERROR, masked)
    if attributes is None and not events_changed and status is span.status:
        return span
    bounded_events: BoundedList[Event] = BoundedList(None)
    bounded_events.extend(events)
    bounded_events.dropped = span.dropped_events
    return ReadableSpan(
        **{name: getattr(span, name) for name in _UNSCRUBBED_SPAN_PARTS},
        attributes=attributes if attributes is not None else span.attributes,
        events=bounded_events,
        status=status,
    )


class ScrubbingSpanProcessor(SpanProcessor):
    """Hands `inner` every ended span as `scrubbed_span` makes it.

    Why a processor wrapper and not an instrumentation hook or a plain processor: hooks are per instrumentation
    and per client (a new client would forget), attributes may be set after `on_start` (the route, the status),
    and `on_end` gets a read-only span. Rewriting the ended span's copy on its way to each processor sees every
    attribute however and whenever it was set, for every exporter, in this one place.
    """

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner = inner

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self.inner.on_end(scrubbed_span(span))

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


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
    """A tracer provider naming the service, version and deployment; OTLP export only when configured.

    Every processor, `extra_processors` included, is wrapped in a ScrubbingSpanProcessor.
    """
    provider = TracerProvider(resource=service_resource(service_name, deployment))
    processors = list(extra_processors or [])
    if otlp_configured():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processors.insert(0, BatchSpanProcessor(OTLPSpanExporter()))
    for processor in processors:
        provider.add_span_processor(ScrubbingSpanProcessor(processor))
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
        # Structured figures (counts, offsets) a command reports: `log.info(..., extra={"fields": {...}})`.
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({name: value for name, value in fields.items() if name not in entry})
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

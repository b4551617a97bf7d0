"""CloudEvents 1.0 over Kafka (binary content mode): attributes in `ce_*` headers, the event as the value.

The key is the event's `message_key`: the tracking code, or for an access record the citizen's subject digest;
never personal data: keys end up in span attributes and in every consumer's logs. The W3C `traceparent` header
is added beside these by the telemetry middleware.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from shared.events import AnyEvent

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
DATASCHEMA_BASE = "urn:khedmat:schema"
TYPE_PREFIX = "ir.khedmat.desk"


def cloudevent_type(event: AnyEvent) -> str:
    """The CloudEvents `type`: reverse-DNS, with the schema version so routers can tell versions apart."""
    return f"{TYPE_PREFIX}.{event.event_type}.v{event.schema_version}"


def cloudevent_headers(event: AnyEvent, *, source: str) -> dict[str, str]:
    """The CloudEvents attributes of an event, as Kafka headers (binary content mode)."""
    return {
        "ce_specversion": SPEC_VERSION,
        "ce_id": event.message_id,
        "ce_source": source,
        "ce_type": cloudevent_type(event),
        "ce_subject": event.message_key,
        "ce_time": event.occurred_at.isoformat(),
        "ce_dataschema": f"{DATASCHEMA_BASE}:{event.event_type}:{event.schema_version}",
        "content-type": CONTENT_TYPE,
    }


def event_key(event: AnyEvent) -> bytes:
    """The Kafka key: the tracking code (or a citizen's subject digest), so what must stay in order shares a
    partition."""
    return event.message_key.encode()


def event_value(event: AnyEvent) -> bytes:
    """The Kafka value: the event as JSON."""
    return event.model_dump_json().encode()


def decode_headers(headers: Iterable[tuple[str, bytes]] | Mapping[str, str]) -> dict[str, str]:
    """Kafka headers as a str->str mapping (the last value wins, as CloudEvents has no repeated attributes)."""
    if isinstance(headers, Mapping):
        return dict(headers)
    return {name: value.decode(errors="replace") for name, value in headers}

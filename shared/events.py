"""Every event on the bus, defined once: frozen pydantic models with an `event_type` and a `schema_version`.

Request lifecycle events travel on `desk.requests`, keyed by tracking code; StatusChanged on `desk.status`;
ReviewRequested on each agency's own `agency.<agency>.inbox`; AccessRecorded on `desk.access`, keyed by the
citizen's subject digest. A consumer parses with `parse_request_event`,
`parse_status_event` or `parse_inbox_event`, which accept every schema version a topic has ever carried (older
versions are upcast here, once, for everyone).
"""

from __future__ import annotations

import json
import typing
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

# The event families live in events_base, events_requests and events_derived; re-exported (see __all__) so
# every caller imports events from here.
from shared.events_access import (
    STAFF_KINDS,
    AccessRecorded,
    ActorKind,
    Purpose,
    ResourceKind,
    derived_access_id,
)
from shared.events_base import (
    EVENT_ID_NAMESPACE,
    LOG_APPEND_TIME_TYPE,
    Applicant,
    BusEvent,
    DocumentRef,
    EventBase,
    Language,
    derived_event_id,
    new_event_id,
    utcnow,
)
from shared.events_derived import (
    InboxEvent,
    NotificationOutcome,
    ReviewApplicant,
    ReviewRequested,
    StatusChanged,
    StatusEvent,
    notification_outcome_id,
)
from shared.events_requests import (
    AcceptedEvent,
    AgencyCommand,
    CitizenCommand,
    CommandEvent,
    ComplaintFiled,
    ComplaintResolved,
    CorrectionSubmitted,
    Decision,
    InquiryCompleted,
    InquiryOutcome,
    NextStep,
    RequestCancelled,
    RequestDecided,
    RequestSubmitted,
    ResultDelivered,
    SlaBreached,
    VerificationCompleted,
    sla_breach_event_id,
)

__all__ = [
    "EVENT_ID_NAMESPACE",
    "LOG_APPEND_TIME_TYPE",
    "REQUEST_EVENT_TYPES",
    "STAFF_KINDS",
    "AcceptedEvent",
    "AccessRecorded",
    "ActorKind",
    "AgencyCommand",
    "AnyEvent",
    "Applicant",
    "BusEvent",
    "CitizenCommand",
    "CommandEvent",
    "ComplaintFiled",
    "ComplaintResolved",
    "CorrectionSubmitted",
    "Decision",
    "DocumentRef",
    "EventBase",
    "InboxEvent",
    "InquiryCompleted",
    "InquiryOutcome",
    "Language",
    "NextStep",
    "NotificationOutcome",
    "Purpose",
    "RequestCancelled",
    "RequestDecided",
    "RequestEvent",
    "RequestSubmitted",
    "ResourceKind",
    "ResultDelivered",
    "ReviewApplicant",
    "ReviewRequested",
    "SlaBreached",
    "StatusChanged",
    "StatusEvent",
    "VerificationCompleted",
    "derived_access_id",
    "derived_event_id",
    "is_known_request_event",
    "new_event_id",
    "notification_outcome_id",
    "parse_access_event",
    "parse_inbox_event",
    "parse_request_event",
    "parse_status_event",
    "sla_breach_event_id",
    "upcast",
    "utcnow",
]


# Written once: the topic's discriminated parse type below, and part of AnyEvent.
_RequestEvents = (
    RequestSubmitted
    | InquiryCompleted
    | VerificationCompleted
    | CorrectionSubmitted
    | RequestCancelled
    | ComplaintFiled
    | RequestDecided
    | ResultDelivered
    | ComplaintResolved
    | SlaBreached
)
RequestEvent = Annotated[_RequestEvents, Field(discriminator="event_type")]
"""Any event of the `desk.requests` topic."""


_request_event_adapter: TypeAdapter[RequestEvent] = TypeAdapter(RequestEvent)
_status_event_adapter: TypeAdapter[StatusChanged] = TypeAdapter(StatusChanged)
_inbox_event_adapter: TypeAdapter[ReviewRequested] = TypeAdapter(ReviewRequested)
_access_event_adapter: TypeAdapter[AccessRecorded] = TypeAdapter(AccessRecorded)


REQUEST_EVENT_TYPES = frozenset(
    event.model_fields["event_type"].default for event in typing.get_args(typing.get_args(RequestEvent)[0])
)
"""The `desk.requests` event types this build understands; newer ones are skipped, not dead-lettered."""


def is_known_request_event(payload: dict[str, Any]) -> bool:
    """Whether this build knows the event's type (forward compatibility: producers may be newer)."""
    return payload.get("event_type") in REQUEST_EVENT_TYPES


def upcast(payload: dict[str, Any]) -> dict[str, Any]:
    """Bring an older schema version of an event up to the current one (none are older than v1 yet)."""
    return payload


def _payload(raw: bytes | bytearray | dict[str, Any]) -> dict[str, Any]:
    payload = json.loads(raw) if isinstance(raw, bytes | bytearray) else raw
    if not isinstance(payload, dict):
        raise ValueError("an event is a JSON object")
    return upcast(payload)


def parse_request_event(payload: bytes | dict[str, Any]) -> RequestEvent:
    """Parse one `desk.requests` event of any supported version (raw bytes are upcast like dicts)."""
    return _request_event_adapter.validate_python(_payload(payload))


def parse_status_event(payload: bytes | dict[str, Any]) -> StatusChanged:
    """Parse one `desk.status` event of any supported version (raw bytes are upcast like dicts)."""
    return _status_event_adapter.validate_python(_payload(payload))


def parse_inbox_event(payload: bytes | dict[str, Any]) -> ReviewRequested:
    """Parse one `agency.<agency>.inbox` event of any supported version."""
    return _inbox_event_adapter.validate_python(_payload(payload))


def parse_access_event(payload: bytes | dict[str, Any]) -> AccessRecorded:
    """Parse one `desk.access` event of any supported version."""
    return _access_event_adapter.validate_python(_payload(payload))


AnyEvent = _RequestEvents | StatusChanged | ReviewRequested | NotificationOutcome | AccessRecorded

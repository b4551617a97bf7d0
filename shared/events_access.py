"""AccessRecorded (`desk.access`): one read of a citizen's personal data, by whom, for what, from where.

Keyed by the subject digest (a keyed HMAC of the national ID, never the ID), so one citizen's records share a
partition and stay in order; tracking chains them per citizen. shared/events.py re-exports them; import from
there.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, Field

from shared.events_base import EVENT_ID_NAMESPACE, BusEvent, utcnow


class ActorKind(StrEnum):
    """Who read: the citizen, a service-office operator, an agency's staff member, an agency's system, a service."""

    CITIZEN = "citizen"
    OPERATOR = "operator"
    AGENCY_STAFF = "agency_staff"
    AGENCY = "agency"
    SERVICE = "service"


# People whose own identifiers the citizen is shown only as their role and organisation.
STAFF_KINDS = frozenset({ActorKind.OPERATOR, ActorKind.AGENCY_STAFF})


class ResourceKind(StrEnum):
    """What was read."""

    REQUEST = "request"
    HISTORY = "history"
    DOCUMENT = "document"
    RESULT = "result"
    ACCESS_LOG = "access_log"
    NOTIFICATIONS = "notifications"


class Purpose(StrEnum):
    """Why it was read."""

    FOLLOW_UP = "follow_up"
    REVIEW = "review"
    VERIFICATION = "verification"
    SUPPORT = "support"
    OVERSIGHT = "oversight"


def _not_a_national_id(value: str) -> str:
    # Every identifier here ends up in the citizen's "who looked" list and in tracking's store: a national ID
    # (ten digits) in one of them would be a leak by construction.
    if len(value) == 10 and value.isdigit():
        raise ValueError("a national ID is never an access record's identifier")
    return value


# Identifiers, not free text: letters, digits and `_ . : - / @`, so the canonical JSON of a record is plain.
Identifier = Annotated[
    str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:/@-]+$"), AfterValidator(_not_a_national_id)
]


class AccessRecorded(BusEvent):
    """On `desk.access`: personal data of one citizen was read (or disclosed), recorded before it was shown."""

    event_type: Literal["AccessRecorded"] = "AccessRecorded"
    schema_version: Literal[1] = 1
    # The idempotency key: a republished record (same id) is stored once.
    access_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    # HMAC-SHA256 (hex) of the citizen's national ID under KHEDMAT_AUDIT_SUBJECT_KEY.
    subject: str = Field(pattern=r"^[0-9a-f]{64}$")
    actor_kind: ActorKind
    # "self" for the citizen, the staff id for staff, the agency id for an agency, the name of a service.
    actor: Identifier
    # The agency id, the service office's id, or "desk".
    organisation: Identifier
    role: Identifier
    resource_kind: ResourceKind
    # A tracking code or similar; never the national ID.
    resource: Identifier
    purpose: Purpose
    # The caller's address as the service saw it (or the inbox topic a disclosure went to).
    client: Annotated[Identifier, Field(max_length=64)]
    occurred_at: AwareDatetime = Field(default_factory=utcnow)

    @property
    def message_id(self) -> str:
        return str(self.access_id)

    @property
    def message_key(self) -> str:
        return self.subject


def derived_access_id(cause_event_id: str, kind: str) -> uuid.UUID:
    """The access id of a record derived from an event (a disclosure): a re-run gives the same id."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"{cause_event_id}|AccessRecorded|{kind}")

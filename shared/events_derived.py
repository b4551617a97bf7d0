"""The events the desk derives from the request log for other topics.

StatusChanged (`desk.status`), NotificationOutcome (`desk.notifications`), ReviewRequested
(`agency.<agency>.inbox`). shared/events.py re-exports them; import from there.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.domain.state_machine import RequestState
from shared.events_base import DocumentRef, EventBase, derived_event_id
from shared.events_requests import InquiryOutcome


class StatusChanged(EventBase):
    """A request moved from one state to another; derived by tracking, carries no personal data."""

    event_type: Literal["StatusChanged"] = "StatusChanged"
    schema_version: Literal[1] = 1
    caused_by: str
    caused_by_type: str
    service_id: str
    agency: str
    previous_status: RequestState | None
    status: RequestState
    reason_fa: str | None = None
    reason_en: str | None = None


StatusEvent = Annotated[StatusChanged, Field(discriminator="event_type")]


class NotificationOutcome(EventBase):
    """On `desk.notifications`: how telling the applicant about one status change on one channel ended.

    No contact details: the channel and the state only. Its id is derived from the status change, the channel
    and the state, so a republished outcome is dropped by a consumer that has seen it.
    """

    event_type: Literal["NotificationOutcome"] = "NotificationOutcome"
    schema_version: Literal[1] = 1
    status_event_id: str
    status: RequestState
    channel: Literal["sms", "email"]
    state: Literal["sent", "delivered", "failed"]


def notification_outcome_id(status_event_id: str, channel: str, state: str) -> str:
    """The one id of one outcome of one notification."""
    return derived_event_id(status_event_id, "NotificationOutcome", f"{channel}:{state}")


class ReviewApplicant(BaseModel):
    """The applicant as the reviewing agency sees them: only what its service's review names, never contacts."""

    model_config = ConfigDict(frozen=True)

    national_id: str | None = Field(default=None, pattern=r"^[0-9]{10}$")
    birth_date: date | None = None


class ReviewRequested(EventBase):
    """On `agency.<agency>.inbox`: a verified request this agency's officers must decide.

    Carries only what the service's `review` section shares (data minimisation: the agency's ACL covers its
    inbox, not `desk.requests`); the officer answers through intake's agency decision endpoint.
    """

    event_type: Literal["ReviewRequested"] = "ReviewRequested"
    schema_version: Literal[1] = 1
    caused_by: str
    service_id: str
    catalog_version: int = Field(ge=1)
    agency: str
    applicant: ReviewApplicant
    fields: dict[str, str] = Field(default_factory=dict)
    documents: list[DocumentRef] = Field(default_factory=list)
    inquiries: dict[str, InquiryOutcome] = Field(default_factory=dict)
    reason_fa: str | None = None
    reason_en: str | None = None


InboxEvent = Annotated[ReviewRequested, Field(discriminator="event_type")]

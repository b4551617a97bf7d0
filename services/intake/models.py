"""intake's HTTP request and response shapes (the public API; documented by FastAPI's OpenAPI)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.catalog import ServiceDefinition
from shared.domain.text import MultiLineText, SingleLineText, TypedNumberText


class ApplicantIn(BaseModel):
    """Who is asking, as typed by the citizen (Persian digits accepted; normalised by intake)."""

    model_config = ConfigDict(extra="forbid")

    national_id: TypedNumberText = Field(min_length=1, max_length=20, examples=["0012345679"])
    mobile: TypedNumberText = Field(min_length=1, max_length=20, examples=["09121234567"])
    email: SingleLineText | None = Field(default=None, max_length=254, examples=["citizen@example.ir"])
    birth_date: TypedNumberText = Field(min_length=1, max_length=20, examples=["1990-01-31"])
    language: str = Field(default="fa", pattern="^(fa|en)$")
    # How to be told of each change; omitted: by SMS, and by email too when an address is given.
    notification_channels: list[Literal["sms", "email"]] | None = Field(
        default=None, min_length=1, max_length=2, examples=[["sms", "email"]]
    )


class SubmissionIn(BaseModel):
    """A request for one service of the catalog."""

    model_config = ConfigDict(extra="forbid")

    service_id: SingleLineText = Field(min_length=1, max_length=100, examples=["birth-certificate-duplicate"])
    applicant: ApplicantIn
    fields: dict[SingleLineText, MultiLineText] = Field(default_factory=dict)
    # Document kind → the id (sha256) that `POST /api/v1/documents` returned for the uploaded file.
    documents: dict[SingleLineText, SingleLineText] = Field(default_factory=dict)


class SubmissionAccepted(BaseModel):
    """The request was recorded on the bus; follow it with this code."""

    tracking_code: str
    tracking_code_display: str
    service_id: str
    catalog_version: int
    status: str = "SUBMITTED"


class ServiceSummary(BaseModel):
    """A catalog entry in a list."""

    id: str
    version: int
    agency: str
    title_fa: str
    title_en: str
    duration_working_days: int
    fee_rials: int


def summarise(service: ServiceDefinition) -> ServiceSummary:
    """The list view of a service."""
    return ServiceSummary(
        id=service.id,
        version=service.version,
        agency=service.agency,
        title_fa=service.title.fa,
        title_en=service.title.en,
        duration_working_days=service.duration_working_days,
        fee_rials=service.fee.amount_rials,
    )

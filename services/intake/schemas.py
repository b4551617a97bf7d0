"""intake's HTTP request and response shapes: submissions, the catalog, commands and uploads (the public API)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.catalog import ServiceDefinition
from shared.domain.text import MULTI_LINE, MultiLineText, SingleLineText, TypedNumberText
from shared.events import Decision, DocumentRef
from shared.http import bilingual_value_error


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


# --- commands on a request -------------------------------------------------------------------------


# Free text of several lines, without control characters or bidi overrides (shared/domain/text.py).
Text500 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), MULTI_LINE]
Text1000 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000), MULTI_LINE]
Text2000 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000), MULTI_LINE]


class CommandIn(BaseModel):
    """A command's body: the field that, with the path's tracking code, addresses the request, then the command's
    own values."""

    model_config = ConfigDict(extra="forbid")

    # The national ID (the citizen's) or the service (the agency's): it says which request, not what to do.
    addressed_by: ClassVar[str]

    def command_fields(self) -> dict[str, Any]:
        """The command's own values, as its use case's arguments of the same names."""
        return {name: getattr(self, name) for name in type(self).model_fields if name != self.addressed_by}


class CitizenCommandIn(CommandIn):
    """The applicant's national ID: with the tracking code it proves the request is theirs."""

    addressed_by = "national_id"

    national_id: TypedNumberText = Field(min_length=1, max_length=20, examples=["0012345679"])


class CorrectionIn(CitizenCommandIn):
    """The corrected values (field name → value) and any re-uploaded documents."""

    fields: dict[SingleLineText, Annotated[MultiLineText, Field(max_length=5000)]] = Field(
        default_factory=dict, max_length=50
    )
    # As returned by the upload; until the document store exists intake records the reference as declared.
    documents: list[DocumentRef] = Field(default_factory=list, max_length=20)
    note: Text2000 | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> CorrectionIn:
        if not self.fields and not self.documents:
            raise bilingual_value_error(
                "correction_empty",
                "a correction changes at least one field or document",
                "اصلاحیه دست‌کم یک مورد یا یک مدرک را تغییر می‌دهد.",
            )
        return self


class CancellationIn(CitizenCommandIn):
    """Withdraw a request that is not decided yet."""

    reason: Text500 | None = None


class ComplaintIn(CitizenCommandIn):
    """A complaint about the decision, or about a request left past its deadline."""

    text: Text2000


class AgencyCommandIn(CommandIn):
    """The service the request is for: it must be in the key's scope and be the request's own service."""

    addressed_by = "service_id"

    service_id: str = Field(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9-]*$")


class DecisionIn(AgencyCommandIn):
    """An agency's decision on a request under its review."""

    decision: Decision
    reason_fa: Text2000 | None = Field(default=None, validate_default=True)
    reason_en: Text2000 | None = Field(default=None, validate_default=True)
    legal_basis: Text500 | None = Field(default=None, validate_default=True)

    @field_validator("reason_fa", "reason_en")
    @classmethod
    def _reason_unless_approved(cls, value: str | None, info: ValidationInfo) -> str | None:
        decision = info.data.get("decision")
        if value is None and decision is not None and decision is not Decision.APPROVE:
            raise bilingual_value_error(
                "decision_reason_missing",
                f"a {decision.value} decision needs its reason in Persian and English",
                "برای تصمیمی جز تأیید، علت آن به فارسی و انگلیسی لازم است.",
            )
        return value

    @field_validator("legal_basis")
    @classmethod
    def _legal_basis_for_rejection(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("decision") is Decision.REJECT:
            raise bilingual_value_error(
                "legal_basis_missing",
                "a rejection must name the law or regulation it rests on",
                "رد درخواست باید قانون یا مقرره‌ای را که بر آن استوار است نام ببرد.",
            )
        return value


class ResultRefIn(BaseModel):
    """The result: a stored document (`document_id`, with its media type and size) or a `url`."""

    model_config = ConfigDict(extra="forbid")

    document_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    # Until the document store can say them itself, the agency states the document's type and size.
    media_type: SingleLineText | None = Field(default=None, min_length=1, max_length=100)
    size_bytes: int | None = Field(default=None, ge=0)
    url: HttpUrl | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ResultRefIn:
        if (self.document_id is None) == (self.url is None):
            raise bilingual_value_error(
                "result_reference",
                "give either document_id or url, exactly one",
                "دقیقاً یکی از این دو را بدهید: شناسهٔ سند یا نشانی اینترنتی.",
            )
        if self.document_id is not None and (self.media_type is None or self.size_bytes is None):
            raise bilingual_value_error(
                "result_document_details",
                "a document_id needs its media_type and size_bytes",
                "برای شناسهٔ سند، نوع و حجم آن هم لازم است.",
            )
        return self

    def document(self) -> DocumentRef | None:
        """The stored result document as a reference, or None when the result is a link."""
        if self.document_id is None:
            return None
        assert self.media_type is not None and self.size_bytes is not None  # checked by _one_kind
        return DocumentRef(
            kind="result", sha256=self.document_id, media_type=self.media_type, size_bytes=self.size_bytes
        )


class ResultIn(AgencyCommandIn):
    """The result of an approved request, with a summary for the citizen."""

    result: ResultRefIn
    summary_fa: Text1000
    summary_en: Text1000

    def command_fields(self) -> dict[str, Any]:
        """The result as a stored document or a link, and the summary."""
        url = str(self.result.url) if self.result.url is not None else None
        return {
            "document": self.result.document(),
            "url": url,
            "summary_fa": self.summary_fa,
            "summary_en": self.summary_en,
        }


class ResolutionIn(AgencyCommandIn):
    """The agency's answer to the open complaint."""

    resolution_fa: Text2000
    resolution_en: Text2000


class CommandAccepted(BaseModel):
    """The command was checked against the request and recorded on the bus; the request's timeline shows it
    applied (or, if another command overtook it in the meantime, refused)."""

    tracking_code: str
    tracking_code_display: str
    event_id: str
    event_type: str
    complaint_id: str | None = None


# --- uploads ----------------------------------------------------------------------------------------


class DocumentUploaded(BaseModel):
    """A stored document; give `document_id` under its kind in the request's `documents`."""

    document_id: str = Field(pattern=r"^[0-9a-f]{64}$", description="The sha256 of the file's content.")
    kind: str
    media_type: str
    size_bytes: int

"""The service catalog's schema: what one published service definition holds, each part validated.

shared/catalog.py loads the YAML files into these models and looks services up; callers import both from there.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from shared.domain.digits import to_persian_digits

# Unknown keys are refused everywhere: a misspelt key in a YAML file would otherwise vanish silently from
# what citizens are shown.
_STRICT = ConfigDict(frozen=True, extra="forbid")


class Text(BaseModel):
    """A text in Persian and English."""

    model_config = _STRICT

    fa: str = Field(min_length=1)
    en: str = Field(min_length=1)


class Agency(BaseModel):
    """A government agency that offers services or answers inquiries."""

    model_config = _STRICT

    id: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    name: Text


class FieldKind(StrEnum):
    """What a form field holds; each kind has its own validation in intake."""

    TEXT = "text"
    DATE = "date"
    POSTAL_CODE = "postal_code"
    NATIONAL_ID = "national_id"
    NUMBER = "number"


# What intake enforces for each kind (services/intake/domain.py), told to the citizen before they type.
_KIND_RULES: dict[FieldKind, tuple[str, str]] = {
    FieldKind.TEXT: ("متن، حداکثر {n} نویسه", "text, at most {n} characters"),
    FieldKind.DATE: ("تاریخ میلادی به شکل سال-ماه-روز", "a Gregorian date written YYYY-MM-DD"),
    FieldKind.POSTAL_CODE: ("کد پستی ۱۰ رقمی", "a 10-digit postal code"),
    FieldKind.NATIONAL_ID: ("کد ملی ۱۰ رقمی با رقم کنترل درست", "a 10-digit national ID with a valid check digit"),
    FieldKind.NUMBER: ("فقط رقم، حداکثر {n} رقم", "digits only, at most {n}"),
}


class FormField(BaseModel):
    """One field of the service's form, with the rules intake checks it against."""

    model_config = _STRICT

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: Text
    kind: FieldKind = FieldKind.TEXT
    required: bool = True
    max_length: int = Field(default=200, ge=1, le=5000)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rule(self) -> Text:
        """The validation rules of this field in words, as intake applies them."""
        fa, en = _KIND_RULES[self.kind]
        presence_fa, presence_en = ("الزامی", "Required") if self.required else ("اختیاری", "Optional")
        return Text(
            fa=f"{presence_fa}؛ {fa.format(n=to_persian_digits(str(self.max_length)))}",
            en=f"{presence_en}; {en.format(n=self.max_length)}",
        )


class DocumentFormat(StrEnum):
    """File formats a service may accept; intake checks the content, never the name."""

    PDF = "pdf"
    JPEG = "jpeg"
    PNG = "png"


class RequiredDocument(BaseModel):
    """A document the citizen uploads with the request."""

    model_config = _STRICT

    kind: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: Text
    formats: list[DocumentFormat] = Field(min_length=1)
    max_size_kb: int = Field(ge=1, le=20 * 1024)
    mandatory: bool = True


class Law(BaseModel):
    """A law or regulation the service rests on."""

    model_config = _STRICT

    title: Text
    number: str = Field(min_length=1)
    # A Jalali date, e.g. 1355-04-16 (years 1200-1499, so a Gregorian date is refused): the first six
    # months have 31 days, the rest at most 30.
    date: str = Field(
        pattern=r"^1[2-4][0-9]{2}-(0[1-6]-(0[1-9]|[12][0-9]|3[01])|(0[7-9]|1[0-2])-(0[1-9]|[12][0-9]|30))$"
    )


class Faq(BaseModel):
    """A frequently asked question and its answer."""

    model_config = _STRICT

    question: Text
    answer: Text


class Inquiry(BaseModel):
    """An electronic check at an agency that the service needs before a decision."""

    model_config = _STRICT

    id: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    agency: str
    check: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    # What the citizen reads on the timeline ("استعلام هویت از سازمان ثبت احوال کشور"); every published
    # service names its inquiries (tests/unit/test_catalog.py), a bare definition may leave it out.
    title: Text | None = None


class DecisionMode(StrEnum):
    """How a request is decided once verified."""

    AUTOMATIC = "automatic"
    AGENCY_REVIEW = "agency_review"


class ApplicantItem(StrEnum):
    """Applicant data a reviewing agency may be shown; contacts (mobile, email) never are: notify owns them."""

    NATIONAL_ID = "national_id"
    BIRTH_DATE = "birth_date"


class ReviewShare(BaseModel):
    """What an officer reviewing a request of this service sees in the agency's inbox (data minimisation).

    Published with the service, so a citizen can read what is shared with whom.
    """

    model_config = _STRICT

    applicant: list[ApplicantItem] = Field(default_factory=lambda: [ApplicantItem.NATIONAL_ID])
    # The form fields shared, by name; None shares every field of the service's form.
    fields: list[str] | None = None
    documents: bool = True


class Fee(BaseModel):
    """What the service costs and who is exempt."""

    model_config = _STRICT

    amount_rials: int = Field(ge=0)
    exempt: list[Text] = Field(default_factory=list)


class ServiceDefinition(BaseModel):
    """A published service: everything the directive requires a citizen to see, and how it is processed."""

    model_config = _STRICT

    id: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    version: int = Field(ge=1)
    # What changed since the previous version; a citizen holding an older request can see why it differs.
    changes: Text | None = None
    agency: str
    title: Text
    description: Text
    steps: list[Text] = Field(min_length=1)
    workflow: list[Text] = Field(min_length=1)
    required_documents: list[RequiredDocument] = Field(default_factory=list)
    fields: list[FormField] = Field(default_factory=list)
    laws: list[Law] = Field(min_length=1)
    faq: list[Faq] = Field(min_length=1)
    duration_working_days: int = Field(ge=1, le=365)
    fee: Fee
    complaint_procedure: Text
    follow_up_procedure: Text
    inquiries: list[Inquiry] = Field(default_factory=list)
    decision: DecisionMode
    # Also used when an inquiry was unavailable and an automatic service falls back to review.
    review: ReviewShare = Field(default_factory=ReviewShare)

    @model_validator(mode="after")
    def _unique_names(self) -> ServiceDefinition:
        for label, names in (
            ("field", [f.name for f in self.fields]),
            ("inquiry", [i.id for i in self.inquiries]),
            ("document", [d.kind for d in self.required_documents]),
        ):
            if len(names) != len(set(names)):
                raise ValueError(f"service {self.id}: duplicate {label} names")
        unknown = set(self.review.fields or ()) - {f.name for f in self.fields}
        if unknown:
            raise ValueError(f"service {self.id}: review shares fields the form does not have: {sorted(unknown)}")
        return self

    @model_validator(mode="after")
    def _later_versions_say_what_changed(self) -> ServiceDefinition:
        if self.version > 1 and self.changes is None:
            raise ValueError(f"service {self.id} v{self.version}: a new version must describe its `changes`")
        return self

    def agency_ids(self) -> set[str]:
        """Every agency this service names: its own and those it sends inquiries to."""
        return {self.agency, *(inquiry.agency for inquiry in self.inquiries)}

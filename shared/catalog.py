"""The service catalog: each service's published definition, loaded from versioned YAML files and validated.

intake publishes it to citizens and validates submissions against it; inquiry reads which inquiries a
service needs and how its decision is made. A change to a service is a new `version`; a request records
the version it was submitted under.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_CATALOG_DIR = Path(__file__).resolve().parent.parent / "catalog" / "services"


class Text(BaseModel):
    """A text in Persian and English."""

    model_config = ConfigDict(frozen=True)

    fa: str
    en: str


class FieldKind(StrEnum):
    """What a form field holds; each kind has its own validation in intake."""

    TEXT = "text"
    DATE = "date"
    POSTAL_CODE = "postal_code"
    NATIONAL_ID = "national_id"
    NUMBER = "number"


class FormField(BaseModel):
    """One field of the service's form."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: Text
    kind: FieldKind = FieldKind.TEXT
    required: bool = True
    max_length: int = Field(default=200, ge=1, le=5000)


class DocumentFormat(StrEnum):
    """File formats a service may accept; intake checks the content, never the name."""

    PDF = "pdf"
    JPEG = "jpeg"
    PNG = "png"


class RequiredDocument(BaseModel):
    """A document the citizen uploads with the request."""

    model_config = ConfigDict(frozen=True)

    kind: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: Text
    formats: list[DocumentFormat] = Field(min_length=1)
    max_size_kb: int = Field(ge=1, le=20 * 1024)
    mandatory: bool = True


class Law(BaseModel):
    """A law or regulation the service rests on."""

    model_config = ConfigDict(frozen=True)

    title: Text
    number: str
    date: str


class Faq(BaseModel):
    """A frequently asked question and its answer."""

    model_config = ConfigDict(frozen=True)

    question: Text
    answer: Text


class Inquiry(BaseModel):
    """An electronic check at an agency that the service needs before a decision."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    agency: str
    check: str


class DecisionMode(StrEnum):
    """How a request is decided once verified."""

    AUTOMATIC = "automatic"
    AGENCY_REVIEW = "agency_review"


class Fee(BaseModel):
    """What the service costs and who is exempt."""

    model_config = ConfigDict(frozen=True)

    amount_rials: int = Field(ge=0)
    exempt: list[Text] = Field(default_factory=list)


class ServiceDefinition(BaseModel):
    """A published service: everything the directive requires a citizen to see, and how it is processed."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    version: int = Field(ge=1)
    agency: str
    title: Text
    description: Text
    steps: list[Text]
    workflow: list[Text]
    required_documents: list[RequiredDocument] = Field(default_factory=list)
    fields: list[FormField] = Field(default_factory=list)
    laws: list[Law]
    faq: list[Faq] = Field(default_factory=list)
    duration_working_days: int = Field(ge=1)
    fee: Fee
    complaint_procedure: Text
    inquiries: list[Inquiry] = Field(default_factory=list)
    decision: DecisionMode

    @model_validator(mode="after")
    def _unique_names(self) -> ServiceDefinition:
        for label, names in (
            ("field", [f.name for f in self.fields]),
            ("inquiry", [i.id for i in self.inquiries]),
            ("document", [d.kind for d in self.required_documents]),
        ):
            if len(names) != len(set(names)):
                raise ValueError(f"service {self.id}: duplicate {label} names")
        return self


class Catalog:
    """The current version of every service, by id."""

    def __init__(self, services: list[ServiceDefinition]) -> None:
        self._services = {service.id: service for service in services}
        if len(self._services) != len(services):
            raise ValueError("two catalog files define the same service id")

    def get(self, service_id: str) -> ServiceDefinition | None:
        """The service with this id, or None."""
        return self._services.get(service_id)

    def all(self) -> list[ServiceDefinition]:
        """Every service, ordered by id."""
        return [self._services[key] for key in sorted(self._services)]


def load_catalog(directory: Path = DEFAULT_CATALOG_DIR) -> Catalog:
    """Load and validate every `*.yaml` service definition in `directory`; a bad file fails the start."""
    services = []
    for path in sorted(directory.glob("*.yaml")):
        with path.open(encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        try:
            services.append(ServiceDefinition.model_validate(data))
        except ValueError as error:
            raise ValueError(f"{path.name}: {error}") from error
    return Catalog(services)

"""What every event shares: its id, its time, and the applicant and document parts several events carry.

shared/events.py re-exports all of it; import from there.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

# Kafka's timestamp type for "stamped by the broker when appended" (0 is the producer's create time).
LOG_APPEND_TIME_TYPE = 1

# Deterministic ids for derived events: uuid5 in this namespace over (cause id, kind, discriminator).
EVENT_ID_NAMESPACE = uuid.UUID("6f1c2e0a-5d1b-4c4e-9a51-3b8f1f0f6a11")


def new_event_id() -> str:
    """A fresh id for an event that is not derived from another (a citizen's or an agency's command)."""
    return str(uuid.uuid4())


def derived_event_id(cause_event_id: str, kind: str, discriminator: str = "") -> str:
    """The id of an event derived from another: the same cause always gives the same id, so duplicates drop."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{cause_event_id}|{kind}|{discriminator}"))


def utcnow() -> datetime:
    """Now, timezone-aware in UTC (every event time is)."""
    return datetime.now(UTC)


class Language(StrEnum):
    """Languages a citizen may read notifications in."""

    FA = "fa"
    EN = "en"


class BusEvent(BaseModel):
    """What every record on the bus is: a frozen fact with an id (CloudEvents `id`), a key and `occurred_at`.

    Most events are about one request (`EventBase`); an access record is about one citizen (its key is their
    subject digest), so the id and the key are properties each family defines.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    @property
    def message_id(self) -> str:
        """The CloudEvents `id`: consumers drop a repeat of it."""
        raise NotImplementedError

    @property
    def message_key(self) -> str:
        """The Kafka key and CloudEvents `subject`: what must stay in order (one partition); never personal data."""
        raise NotImplementedError


class EventBase(BusEvent):
    """Fields every event about one request carries; keyed by its tracking code."""

    event_id: str = Field(default_factory=new_event_id)
    tracking_code: str = Field(min_length=15, max_length=15, pattern=r"^[0-9]{15}$")
    occurred_at: datetime = Field(default_factory=utcnow)

    @property
    def message_id(self) -> str:
        return self.event_id

    @property
    def message_key(self) -> str:
        return self.tracking_code


class Applicant(BaseModel):
    """Who asked; personal data, so it stays on internal topics and never in keys, spans or logs."""

    model_config = ConfigDict(frozen=True)

    national_id: str = Field(pattern=r"^[0-9]{10}$")
    mobile: str = Field(pattern=r"^09[0-9]{9}$")
    email: EmailStr | None = None
    birth_date: date
    language: Language = Language.FA
    # The channels the citizen asked to be told on; None: SMS, and email when an address was given.
    notification_channels: tuple[Literal["sms", "email"], ...] | None = Field(default=None, min_length=1, max_length=2)

    @model_validator(mode="after")
    def _channels_reachable(self) -> Applicant:
        channels = self.notification_channels
        if channels is not None and len(set(channels)) != len(channels):
            raise ValueError("a notification channel is named twice")
        if channels is not None and "email" in channels and self.email is None:
            raise ValueError("email notifications need an email address")
        return self


class DocumentRef(BaseModel):
    """An uploaded document, by the sha256 of its content (the blob store is content-addressed)."""

    model_config = ConfigDict(frozen=True)

    kind: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    media_type: str
    size_bytes: int = Field(ge=0)

"""Kafka topic names and how they are created; the one registry every service and test reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Topic(StrEnum):
    """The topics of the desk."""

    REQUESTS = "desk.requests"
    """Every lifecycle event of every request, keyed by tracking code (one request = one partition, in order)."""
    STATUS = "desk.status"
    """StatusChanged, derived by tracking; no personal data."""
    NOTIFICATIONS = "desk.notifications"
    """notify's outcomes: sent, delivered, failed."""
    ACCESS = "desk.access"
    """AccessRecorded: every read of personal data, keyed by the citizen's subject digest; kept forever."""


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic of a topic."""
    return f"{topic}.dlq"


def agency_inbox_topic(agency: str) -> str:
    """The per-agency inbox; ACLs by the `agency.<agency>.` prefix isolate agencies from one another."""
    return f"agency.{agency}.inbox"


@dataclass(frozen=True)
class TopicSpec:
    """A topic to create where the project manages its own topics (local runs and tests)."""

    name: str
    configs: dict[str, str] = field(default_factory=dict)


# The broker stamps each record of desk.requests with the time it appended it. intake and every consumer
# compare that one number with the submission's `accept_by`, so all of them agree whether a submission
# that Kafka acknowledged late (after intake already answered 503) counts: it does not.
LOG_APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}


# The access records are the evidence of who read a citizen's file: never deleted by age or size. Its dead letters
# too (a record tracking could not store must still be there to be looked into).
KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}


def core_topics() -> list[TopicSpec]:
    """The topics the services need before they start."""
    names = [Topic.REQUESTS, Topic.STATUS, Topic.NOTIFICATIONS]
    return (
        [
            TopicSpec(Topic.REQUESTS.value, configs=dict(LOG_APPEND_TIME)),
            TopicSpec(Topic.STATUS.value),
            TopicSpec(Topic.NOTIFICATIONS.value),
        ]
        + [TopicSpec(dead_letter_topic(name)) for name in names]
        + [
            TopicSpec(Topic.ACCESS.value, configs=dict(KEEP_FOREVER)),
            TopicSpec(dead_letter_topic(Topic.ACCESS), configs=dict(KEEP_FOREVER)),
        ]
    )

"""inquiry's record handler driven as its KeyOrderedConsumer drives it, for unit tests of the handler, and the
submissions those tests feed it.

Each event becomes a fake desk.requests record handed to `handle_request_record` through the consumer's own
`process_record` (its retries and dead-lettering); what inquiry publishes, dead letters included, goes to
faststream's in-memory broker, where the tests' spies read it. The consumer's fetching and commits are
exercised on real Kafka in tests/integration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from services.inquiry.adapters import IdentityAnswer
from services.inquiry.consumers import Inquiry, handle_request_record
from services.inquiry.service import Agencies
from services.inquiry.store import PublishMarks, Sessions
from shared.catalog import load_catalog
from shared.domain.identity import make_valid_national_id
from shared.domain.tracking_code import TrackingCodeGenerator
from shared.events import AnyEvent, Applicant, RequestSubmitted
from shared.kafka import DeadLetterPolicy, make_broker
from shared.keyed_consumer import Record, process_record
from shared.settings import KafkaSettings
from shared.topics import Topic, agency_inbox_topic, dead_letter_topic
from tests.unit.records import record_of

SERVICE_ID = "birth-certificate-duplicate"
NATIONAL_ID = make_valid_national_id("001234567")
MOBILE = "09121234567"
BIRTH_DATE = date(1990, 1, 31)
CODES = TrackingCodeGenerator(key=b"k" * 32, replica_id=1)
CATALOG = load_catalog()
OUTCOME_TYPES = ("InquiryCompleted", "VerificationCompleted")


def submitted(
    service_id: str = SERVICE_ID, *, fields: dict[str, str] | None = None, accept_by: datetime | None = None
) -> RequestSubmitted:
    """A submission of the service by one applicant, with `fields` (a lost certificate's reason unless given)."""
    # An unknown service keeps the seeded one's version and agency: only its id is unknown.
    service = CATALOG.get(service_id) or CATALOG.get(SERVICE_ID)
    assert service is not None
    return RequestSubmitted(
        tracking_code=CODES.next_code(),
        service_id=service_id,
        catalog_version=service.version,
        agency=service.agency,
        applicant=Applicant(national_id=NATIONAL_ID, mobile=MOBILE, birth_date=BIRTH_DATE),
        fields={"reason": "lost"} if fields is None else fields,
        # TestKafkaBroker stamps records with the current time as their LogAppendTime.
        accept_by=accept_by or datetime.now(UTC) + timedelta(minutes=1),
    )


@dataclass
class FakeRegistry:
    """A civil registry answering from memory, counting its calls."""

    answer: IdentityAnswer = field(default_factory=lambda: IdentityAnswer(match=True, alive=True))
    error: Exception | None = None
    calls: list[tuple[str, date]] = field(default_factory=list)

    async def check_identity(self, *, national_id: str, birth_date: date) -> IdentityAnswer:
        self.calls.append((national_id, birth_date))
        if self.error is not None:
            raise self.error
        return self.answer


@dataclass
class Feed:
    """Hands desk.requests records to inquiry's handler one after another, as its consumer would."""

    deps: Inquiry
    dead_letters: DeadLetterPolicy = field(default_factory=lambda: DeadLetterPolicy(base_delay_s=0.0))
    offset: int = 0

    def __post_init__(self) -> None:
        self.dead_letters.broker = self.deps.broker  # dead letters go where the tests' spies listen

    async def deliver(self, *events: AnyEvent | dict[str, Any], timestamp_ms: int | None = None) -> None:
        """A record of each event in turn, appended at `timestamp_ms` (now unless given), each processed to its
        end before the next."""

        async def handle(record: Record, _attempt: int) -> None:
            await handle_request_record(self.deps, record)

        for event in events:
            record = record_of(Topic.REQUESTS, event, offset=self.offset, timestamp_ms=timestamp_ms)
            self.offset += 1
            await process_record(record, handle=handle, dead_letters=self.dead_letters)
            await self.deps.marks.flush()  # the service flushes every 0.1 s; here before the next delivery


@dataclass
class Seen:
    """What a spy subscriber on a topic received: parsed body and key, in order."""

    messages: list[tuple[dict[str, Any], bytes | None]] = field(default_factory=list)

    def of_type(self, *types: str) -> list[tuple[dict[str, Any], bytes | None]]:
        return [(body, key) for body, key in self.messages if body.get("event_type") in types]

    def spy_on(self, broker: KafkaBroker, topic: str, group_id: str) -> None:
        """Record every message the broker gets on `topic`."""

        @broker.subscriber(topic, group_id=group_id)
        async def spy(body: dict[str, Any], message: KafkaMessage) -> None:
            record = message.raw_message
            assert not isinstance(record, tuple)
            self.messages.append((body, record.key))


@dataclass
class Wired:
    """inquiry's handler on an in-memory broker, with spies on what it publishes."""

    broker: KafkaBroker
    registry: FakeRegistry
    requests: Seen
    dead_letters: Seen
    inbox: Seen
    feed: Feed

    def outcomes(self) -> list[dict[str, Any]]:
        """The inquiry's outcomes published on desk.requests, in order."""
        return [body for body, _ in self.requests.of_type(*OUTCOME_TYPES)]

    def ids(self) -> list[str]:
        return [body["event_id"] for body in self.outcomes()]


def wired(registry: FakeRegistry | None = None, *, sessions: Sessions) -> Wired:
    registry = registry or FakeRegistry()
    broker = make_broker(kafka=KafkaSettings(), client_id="t")
    requests, dead_letters, inbox = Seen(), Seen(), Seen()
    requests.spy_on(broker, Topic.REQUESTS, "spy")
    dead_letters.spy_on(broker, dead_letter_topic(Topic.REQUESTS), "dlq-spy")
    inbox.spy_on(broker, agency_inbox_topic("civil-registry"), "inbox-spy")
    deps = Inquiry(CATALOG, Agencies(civil_registry=registry), broker, sessions, PublishMarks(sessions))
    return Wired(broker, registry, requests, dead_letters, inbox, Feed(deps))

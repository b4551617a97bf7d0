"""A service's subscriptions and publications, each declared once: its consumers and its AsyncAPI come from them.

A `Subscription` says which topic a consumer group reads, which events it handles and how it runs (a
`KeyOrderedConsumer` per record, or a batch consumer of a projection); `build_consumers` turns a service's
list into the consumers its process starts, and `asyncapi_document` turns the same list, with the service's
`Publication`s, into the AsyncAPI document agencies read. `read_event` is the preamble every record handler
shares: decode, skip what the subscription does not handle, parse, drop what never counted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, TypeVar, Union

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from opentelemetry.trace import TracerProvider
from prometheus_client import Counter
from pydantic import Field, TypeAdapter

from shared.events import AcceptedEvent, BusEvent, upcast
from shared.kafka import Consumer, DeadLetterPolicy, PermanentError
from shared.keyed_consumer import KeyOrderedConsumer, Record, RecordHandler
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)

E = TypeVar("E", bound=BusEvent)

RECORDS_READ = Counter(
    "khedmat_consumer_records_read_total",
    "Records a handler read, by topic and what became of them (event, skipped, late)",
    ["topic", "outcome"],
)


class Kind(StrEnum):
    """How a subscription's records are consumed."""

    KEY_ORDERED = "key-ordered"  # shared.keyed_consumer: per record, concurrent across keys, in order within one
    PROJECTION = "projection"  # a batch consumer folding into a projection that keeps its own offsets


@dataclass(frozen=True)
class ConsumerParts:
    """What every consumer of one process is built with."""

    kafka: KafkaSettings
    dead_letters: DeadLetterPolicy
    client_id: str
    tracer_provider: TracerProvider

    def arguments(self) -> dict[str, Any]:
        """These parts as keyword arguments: every consumer class here takes each under its field's name."""
        return {part.name: getattr(self, part.name) for part in fields(self)}


ConsumerFactory = Callable[["Subscription", ConsumerParts], Consumer]


@dataclass(frozen=True)
class Subscription:
    """One consumer group's subscription to one topic: what it reads, what it is for, how it runs."""

    name: str  # who reads, in the AsyncAPI channel's title `<topic>:<name>`
    topic: str
    group: str
    events: tuple[type[BusEvent], ...]  # the events it handles; every other type is skipped unparsed
    description: str
    kind: Kind = Kind.KEY_ORDERED
    handler: RecordHandler | None = None  # KEY_ORDERED: called once per record
    projection: ConsumerFactory | None = None  # PROJECTION: builds the batch consumer from this declaration
    concurrency: int = 32  # KEY_ORDERED: records in flight; PROJECTION: records per batch

    def __post_init__(self) -> None:
        if (self.kind is Kind.KEY_ORDERED) != (self.handler is not None) or (self.kind is Kind.PROJECTION) != (
            self.projection is not None
        ):
            raise ValueError(f"{self.kind} subscription {self.name} needs exactly its own kind's handler")
        if not self.events:
            raise ValueError(f"subscription {self.name} handles no event")


@dataclass(frozen=True)
class Publication:
    """Events a service publishes to one topic."""

    topic: str
    events: tuple[type[BusEvent], ...]
    description: str = ""


def build_consumers(subscriptions: Sequence[Subscription], parts: ConsumerParts) -> list[Consumer]:
    """The consumers a process starts: one per declared subscription."""
    consumers: list[Consumer] = []
    for subscription in subscriptions:
        if subscription.projection is not None:
            consumers.append(subscription.projection(subscription, parts))
            continue
        assert subscription.handler is not None  # __post_init__: a key-ordered subscription has its handler
        consumers.append(
            KeyOrderedConsumer(
                **parts.arguments(),
                topic=subscription.topic,
                group_id=subscription.group,
                handler=subscription.handler,
                concurrency=subscription.concurrency,
            )
        )
    return consumers


# ------------------------------------------------------------------------------------------ the record preamble
@cache
def event_types(events: tuple[type[BusEvent], ...]) -> frozenset[str]:
    """The `event_type` names of these event classes."""
    return frozenset(str(event.model_fields["event_type"].default) for event in events)


@cache
def _adapter(events: tuple[type[BusEvent], ...]) -> TypeAdapter[Any]:
    if len(events) == 1:
        return TypeAdapter(events[0])
    union: Any = Annotated[Union[events], Field(discriminator="event_type")]  # noqa: UP007
    return TypeAdapter(union)


@dataclass(frozen=True)
class Read:
    """A record's event, and whether it counts (a submission or command appended after its accept_by does not)."""

    event: BusEvent
    counts: bool


def read_record(record: Record, events: tuple[type[BusEvent], ...]) -> Read | None:
    """The record's event if it is one of `events`, else None (skip it); raises PermanentError for a non-event.

    Types this subscription does not handle, including types newer than this build, are skipped unparsed, so a
    newer producer never blocks a partition.
    """
    try:
        body = json.loads(record.value) if record.value is not None else None
    except ValueError as error:
        RECORDS_READ.labels(record.topic, "invalid").inc()
        raise PermanentError(f"not JSON: {error}") from error
    if not isinstance(body, dict):
        RECORDS_READ.labels(record.topic, "invalid").inc()
        raise PermanentError("an event is a JSON object")
    if body.get("event_type") not in event_types(events):
        RECORDS_READ.labels(record.topic, "skipped").inc()
        return None
    event: BusEvent = _adapter(events).validate_python(upcast(body))
    counts = not isinstance(event, AcceptedEvent) or event.counts(
        timestamp_ms=record.timestamp, timestamp_type=record.timestamp_type
    )
    RECORDS_READ.labels(record.topic, "event" if counts else "late").inc()
    return Read(event, counts)


def read_event(record: Record, events: tuple[type[E], ...]) -> E | None:
    """The record's event if it is one of `events` and counts, else None (skip it); see `read_record`.

    A submission or command Kafka appended after intake had answered 503 never happened: it is skipped, logged.
    """
    read = read_record(record, events)
    if read is None:
        return None
    if not read.counts and isinstance(read.event, AcceptedEvent):
        code = read.event.tracking_code
        log.warning(
            "skipping %s %s: appended after its accept_by (intake answered 503)",
            type(read.event).__name__,
            code,
            extra={"tracking_code": code},
        )
        return None
    event: E = read.event  # type: ignore[assignment]  # one of `events`: read_record parsed it as their union
    return event


# ------------------------------------------------------------------------------------------ the AsyncAPI document
def asyncapi_document(
    *,
    service: str,
    version: str,
    bootstrap_servers: str,
    subscriptions: Sequence[Subscription],
    publications: Sequence[Publication],
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of a service's declared subscriptions and publications, and nothing else.

    faststream's generator reads them from a broker that is never started; each receive operation also names
    its consumer group (Kafka operation binding `groupId`, and in its description).
    """
    broker = KafkaBroker(bootstrap_servers)
    for publication in publications:
        for event in publication.events:
            broker.publisher(
                publication.topic,
                title=f"{publication.topic}:{event.__name__}",
                description=publication.description or None,
                schema=event,
            )
    for subscription in subscriptions:
        broker.subscriber(
            subscription.topic,
            group_id=subscription.group,
            title=_title(subscription),
            description=f"{subscription.description} Consumer group `{subscription.group}`.",
        )(_documented(subscription.events))
    spec = AsyncAPI(
        broker,
        title=f"Khedmat {service} events",
        version=version,
        description=f"What {service} consumes from and publishes to Kafka (CloudEvents 1.0, binary mode).",
    )
    document: dict[str, Any] = json.loads(spec.to_specification().to_json())
    for subscription in subscriptions:
        document["operations"][_title(subscription)]["bindings"] = {
            "kafka": {"bindingVersion": "0.4.0", "groupId": {"type": "string", "enum": [subscription.group]}}
        }
    return document


def receive_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    """The (topic, consumer group) of each receive operation of an AsyncAPI document made here."""
    found = set()
    for operation in document.get("operations", {}).values():
        if operation["action"] == "receive":
            channel = document["channels"][operation["channel"]["$ref"].rsplit("/", 1)[-1]]
            found.add((channel["address"], operation["bindings"]["kafka"]["groupId"]["enum"][0]))
    return found


def _title(subscription: Subscription) -> str:
    return f"{subscription.topic}:{subscription.name}"


def _documented(events: tuple[type[BusEvent], ...]) -> Callable[..., Any]:
    """A never-called handler whose body annotation is the union of the events: its message schema."""

    async def documented(body: Any) -> None:
        raise NotImplementedError("documentation only: records are consumed by the declared consumer")

    body = Annotated[Union[events], Field(discriminator="event_type")] if len(events) > 1 else events[0]  # noqa: UP007
    documented.__annotations__ = {"body": body, "return": None}
    return documented

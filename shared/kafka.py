"""The Kafka broker factory with safe settings, event publishing, topic creation and dead-lettering.

aiokafka's producer defaults to acks=1 without idempotence. Every broker made here sends with acks=all and
idempotence; it only publishes: records are consumed by the services' own aiokafka consumers
(`shared.keyed_consumer`, tracking's projection consumer), built from their declared subscriptions
(`shared.subscriptions`), which retry a failing record with backoff and end it on `<topic>.dlq`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import RecordMetadata
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from opentelemetry.trace import TracerProvider
from prometheus_client import REGISTRY, Counter, Gauge
from pydantic import ValidationError

from shared.envelope import cloudevent_headers, decode_headers, event_key, event_value
from shared.events import AnyEvent
from shared.settings import KafkaSettings
from shared.topics import TopicSpec, dead_letter_topic

log = logging.getLogger(__name__)

PRODUCER_ACKS = "all"


class PermanentError(Exception):
    """A failure that no retry can fix: the message goes straight to the dead-letter topic."""


NON_RETRYABLE: tuple[type[BaseException], ...] = (PermanentError, ValidationError, ValueError, KeyError, TypeError)

_LONG_DIGITS = re.compile(r"\d{8,}")

DEAD_LETTERED = Counter(
    "khedmat_dead_lettered_total", "Records sent to a dead-letter topic, by source topic", ["topic"]
)
CONSUMER_LAG = Gauge(
    "khedmat_consumer_lag",
    "Records in a partition the group has not consumed yet (high watermark - position)",
    ["group", "topic", "partition"],
)
# How often the consume loops refresh CONSUMER_LAG (a position read per assigned partition).
LAG_EVERY_S = 5.0


async def record_lag(consumer: AIOKafkaConsumer, group: str) -> None:
    """Set CONSUMER_LAG for each partition assigned to `consumer` from its last fetch's high watermark.

    Never raises: a partition revoked mid-way (a rebalance) is skipped, and a metric must not stop a consume loop.
    """
    for tp in consumer.assignment():
        try:
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue  # nothing fetched from it yet
            # asyncio.timeout, not wait_for: 3.11's wait_for returns the result to a task cancelled just as
            # position() returns (CPython gh-86296), so the consume loop calling this lost its stop for ever.
            async with asyncio.timeout(1.0):
                position = await consumer.position(tp)
        except Exception:
            continue
        CONSUMER_LAG.labels(group, tp.topic, str(tp.partition)).set(max(0, highwater - position))


def scrub(text: str, limit: int = 500) -> str:
    """An error text fit for a header or a log: long digit runs (national IDs, mobiles) masked, bounded."""
    return _LONG_DIGITS.sub(lambda m: m.group()[:2] + "*" * (len(m.group()) - 3) + m.group()[-1], text)[:limit]


@dataclass
class DeadLetterPolicy:
    """When a failing record is retried (with backoff, so a down dependency is no hot loop) and when it is
    dead-lettered; the consumers (`shared.keyed_consumer`, tracking's projection consumer) apply it."""

    max_attempts: int = 5
    base_delay_s: float = 0.2
    max_delay_s: float = 10.0
    broker: KafkaBroker | None = None

    def delay_for(self, attempt: int) -> float:
        """Full-jitter exponential backoff (AWS architecture blog's variant): spreads retries of many consumers."""
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1))))

    def gives_up(self, error: BaseException, attempt: int) -> bool:
        """Whether a message that failed its `attempt`-th time goes to the dead-letter topic now."""
        return isinstance(error, NON_RETRYABLE) or attempt >= self.max_attempts

    async def back_off(self, record: ConsumerRecord[Any, Any], error: BaseException, attempt: int) -> None:
        """Wait before the next attempt (full jitter), saying why."""
        delay = self.delay_for(attempt)
        log.warning(
            "retrying %s[%d]@%d in %.2fs (attempt %d): %s",
            record.topic,
            record.partition,
            record.offset,
            delay,
            attempt,
            scrub(repr(error)),
        )
        await asyncio.sleep(delay)

    async def dead_letter(self, record: ConsumerRecord[Any, Any], error: BaseException, *, attempts: int) -> None:
        """Publish the original message, untouched, to `<topic>.dlq` with why and where it came from."""
        if self.broker is None:
            raise RuntimeError("DeadLetterPolicy.broker is not set")
        headers = decode_headers(record.headers or ())
        headers.update(
            {
                "dlq_reason": scrub(f"{type(error).__name__}: {error}"),
                "dlq_source_topic": record.topic,
                "dlq_source_partition": str(record.partition),
                "dlq_source_offset": str(record.offset),
                "dlq_attempts": str(attempts),
            }
        )
        await self.broker.publish(record.value, dead_letter_topic(record.topic), key=record.key, headers=headers)
        DEAD_LETTERED.labels(record.topic).inc()
        log.error(
            "dead-lettered %s[%d]@%d after %d attempt(s): %s",
            record.topic,
            record.partition,
            record.offset,
            attempts,
            headers["dlq_reason"],
        )


async def topic_partitions(kafka: KafkaSettings, topic: str) -> list[int]:
    """The topic's partition ids from the cluster's metadata (empty when the topic does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, request_timeout_ms=kafka.request_timeout_ms)
    await admin.start()
    try:
        [description] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(partition["partition"] for partition in description.get("partitions", []))


def make_consumer(kafka: KafkaSettings, *, group_id: str | None, client_id: str, **options: Any) -> AIOKafkaConsumer:
    """A bare aiokafka consumer for the services' own consume loops: it never commits on its own (each loop
    commits what it has done, or keeps its offsets elsewhere) and starts a new group at the first record."""
    return AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=kafka.request_timeout_ms,
        **options,
    )


# One for the process: its collectors register once in the default registry, which /metrics serves.
_PROMETHEUS_MIDDLEWARE = KafkaPrometheusMiddleware(registry=REGISTRY, app_name="khedmat")


def make_broker(
    *,
    kafka: KafkaSettings,
    client_id: str,
    tracer_provider: TracerProvider | None = None,
    dead_letters: DeadLetterPolicy | None = None,
) -> KafkaBroker:
    """A broker that publishes only: its producer waits for all in-sync replicas, idempotently.

    `dead_letters`, when given, publishes its dead letters through this broker.
    """
    broker = KafkaBroker(
        kafka.bootstrap_servers,
        client_id=client_id,
        acks=PRODUCER_ACKS,
        enable_idempotence=True,
        request_timeout_ms=kafka.request_timeout_ms,
        linger_ms=1,
        # faststream logs every message at INFO; keep them at DEBUG and let our JSON handler format the rest.
        logger=logging.getLogger("khedmat.broker"),
        log_level=logging.DEBUG,
        # PRODUCER spans that carry the trace to the consumers, and faststream's published_* metrics.
        middlewares=[KafkaTelemetryMiddleware(tracer_provider=tracer_provider), _PROMETHEUS_MIDDLEWARE],
    )
    if dead_letters is not None:
        dead_letters.broker = broker
    return broker


async def publish_event(broker: KafkaBroker, event: AnyEvent, *, topic: str, source: str) -> RecordMetadata:
    """Publish one event as a CloudEvent keyed by its `message_key`; returns once Kafka acknowledged it."""
    return await broker.publish(
        event_value(event),
        topic,
        key=event_key(event),
        headers=cloudevent_headers(event, source=source),
        correlation_id=event.message_id,
    )


async def ensure_topics(kafka: KafkaSettings, topics: list[TopicSpec]) -> None:
    """Create the topics that do not exist yet and set the configs the code relies on (idempotent).

    A no-op when topic management is external (Strimzi's KafkaTopic resources in production).
    """
    if not kafka.create_topics:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(spec.name, kafka.topic_partitions, kafka.replication_factor, topic_configs=spec.configs)
            for spec in topics
            if spec.name not in existing
        ]
        if missing:
            # Another replica may win the race; the topic is there, which is all we need.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
        configured = [
            ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=spec.configs)
            for spec in topics
            if spec.configs and spec.name in existing
        ]
        if configured:
            await admin.alter_configs(configured)
    finally:
        await admin.close()


class Consumer(Protocol):
    """A consumer the process runs (see shared.subscriptions.build_consumers): started once the broker is up."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class BusConnection:
    """Starts a broker in the background and keeps retrying, so a service comes up (not ready) without Kafka.

    `/readyz` reports `connected`; intake answers 503 while it is False instead of crashing at start.
    Extra consumers start once the broker (their publisher) is up, and stop before it.
    """

    def __init__(
        self,
        broker: KafkaBroker,
        *,
        kafka: KafkaSettings,
        topics: list[TopicSpec],
        consumers: list[Consumer] | None = None,
    ) -> None:
        self.broker = broker
        self.kafka = kafka
        self.topics = topics
        self.consumers = consumers or []
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started: list[Consumer] = []

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                await ensure_topics(self.kafka, self.topics)
                await self.broker.start()
                for consumer in self.consumers:
                    if consumer not in self._started:
                        await consumer.start()
                        self._started.append(consumer)
            except Exception as error:  # any failure to reach Kafka: wait and try again
                log.warning("kafka not reachable yet (%s); retrying in %.1fs", scrub(repr(error), 200), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self.connected.set()
            log.info("connected to kafka at %s", self.kafka.bootstrap_servers)
            return

    def start(self) -> None:
        """Begin connecting in the background."""
        self._task = asyncio.create_task(self._run(), name="kafka-connect")

    async def wait(self, timeout: float | None = None) -> None:
        """Wait until connected (tests and CLIs)."""
        async with asyncio.timeout(timeout):
            await self.connected.wait()

    async def ready(self) -> bool:
        """Readiness check: connected to Kafka."""
        return self.connected.is_set()

    async def stop(self) -> None:
        """Stop connecting, stop the consumers (each commits what it finished), then the broker."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        # Consumers first: they finish and commit their records while the broker can still publish outcomes.
        # All at once: each drains within its own budget, and one after another they would add up past the
        # supervisor's grace period.
        await asyncio.gather(*(consumer.stop() for consumer in self._started))
        self._started.clear()
        await self.broker.stop()

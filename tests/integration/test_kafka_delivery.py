"""The broker factory's delivery guarantees, shown on the real Kafka broker."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from faststream.kafka import KafkaBroker

from shared.kafka import DeadLetterPolicy, PermanentError, ensure_topics, make_broker
from shared.settings import KafkaSettings
from shared.topics import TopicSpec, dead_letter_topic


async def started(broker: KafkaBroker) -> KafkaBroker:
    await broker.start()
    return broker


def unique_topic() -> str:
    return f"test.delivery.{uuid.uuid4().hex[:10]}"


async def read_all(kafka_settings: KafkaSettings, topic: str, count: int, timeout_s: float = 20) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_settings.bootstrap_servers, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=500)
                for partition_records in batch.values():
                    records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


async def test_every_producer_waits_for_all_replicas_and_is_idempotent(kafka_settings: KafkaSettings) -> None:
    broker = make_broker(kafka=kafka_settings, client_id="test-settings")
    await broker.start()
    try:
        producer = broker.config.broker_config.producer._producer.producer  # type: ignore[attr-defined]
        assert producer._sender._acks == -1  # acks=all
        assert producer._txn_manager is not None  # idempotence on
    finally:
        await broker.stop()


async def test_every_subscriber_commits_only_after_its_handler_succeeded(kafka_settings: KafkaSettings) -> None:
    topic = unique_topic()
    await ensure_topics(kafka_settings, [TopicSpec(topic), TopicSpec(dead_letter_topic(topic))])
    broker = make_broker(
        kafka=kafka_settings, client_id="test-commit", dead_letters=DeadLetterPolicy(base_delay_s=0.01)
    )
    seen: list[str] = []
    done = asyncio.Event()

    @broker.subscriber(topic, group_id=f"g-{topic}", auto_offset_reset="earliest")
    async def handler(body: dict[str, Any]) -> None:
        seen.append(body["n"])
        if len(seen) == 1:
            raise ConnectionError("a dependency hiccuped")  # retryable: must be redelivered, not skipped
        done.set()

    subscriber = broker.subscribers[0]
    assert subscriber._connection_args["enable_auto_commit"] is False  # type: ignore[attr-defined]
    await broker.start()
    try:
        await broker.publish({"n": "one"}, topic, key=b"k")
        await asyncio.wait_for(done.wait(), 30)
    finally:
        await broker.stop()
    assert seen == ["one", "one"]


async def test_a_poison_message_is_dead_lettered_with_its_reason_and_the_next_one_is_processed(
    kafka_settings: KafkaSettings,
) -> None:
    topic = unique_topic()
    await ensure_topics(kafka_settings, [TopicSpec(topic), TopicSpec(dead_letter_topic(topic))])
    broker = make_broker(kafka=kafka_settings, client_id="test-dlq", dead_letters=DeadLetterPolicy(base_delay_s=0.01))
    processed: list[str] = []
    done = asyncio.Event()

    @broker.subscriber(topic, group_id=f"g-{topic}", auto_offset_reset="earliest")
    async def handler(body: dict[str, Any]) -> None:
        if body["n"] == "poison":
            raise PermanentError("cannot be parsed: national id 0012345679")
        processed.append(body["n"])
        done.set()

    await broker.start()
    try:
        await broker.publish({"n": "poison"}, topic, key=b"same")
        await broker.publish({"n": "after"}, topic, key=b"same")
        await asyncio.wait_for(done.wait(), 30)
    finally:
        await broker.stop()
    assert processed == ["after"]
    [dead] = await read_all(kafka_settings, dead_letter_topic(topic), 1)
    headers = {name: value.decode() for name, value in dead.headers}
    assert b"poison" in dead.value
    assert headers["dlq_source_topic"] == topic
    assert headers["dlq_reason"].startswith("PermanentError: cannot be parsed")
    assert "0012345679" not in headers["dlq_reason"]  # personal data never travels in an error text


@pytest.mark.parametrize("attempts", [3])
async def test_a_message_that_keeps_failing_is_retried_with_backoff_then_dead_lettered(
    kafka_settings: KafkaSettings, attempts: int
) -> None:
    topic = unique_topic()
    await ensure_topics(kafka_settings, [TopicSpec(topic), TopicSpec(dead_letter_topic(topic))])
    broker = make_broker(
        kafka=kafka_settings,
        client_id="test-retry",
        dead_letters=DeadLetterPolicy(max_attempts=attempts, base_delay_s=0.01),
    )
    calls = 0

    @broker.subscriber(topic, group_id=f"g-{topic}", auto_offset_reset="earliest")
    async def handler(body: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        raise TimeoutError("agency down")

    await broker.start()
    try:
        await broker.publish({"n": "x"}, topic, key=b"k")
        [dead] = await read_all(kafka_settings, dead_letter_topic(topic), 1)
    finally:
        await broker.stop()
    assert calls == attempts
    assert dict((k, v.decode()) for k, v in dead.headers)["dlq_attempts"] == str(attempts)


async def test_a_message_that_succeeds_after_retries_leaves_no_attempt_count_behind(
    kafka_settings: KafkaSettings,
) -> None:
    topic = unique_topic()
    await ensure_topics(kafka_settings, [TopicSpec(topic), TopicSpec(dead_letter_topic(topic))])
    policy = DeadLetterPolicy(base_delay_s=0.01)
    broker = make_broker(kafka=kafka_settings, client_id="test-forget", dead_letters=policy)
    calls = 0
    done = asyncio.Event()

    @broker.subscriber(topic, group_id=f"g-{topic}", auto_offset_reset="earliest")
    async def handler(body: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("flaky")
        done.set()

    await broker.start()
    try:
        await broker.publish({"n": "x"}, topic, key=b"k")
        await asyncio.wait_for(done.wait(), 30)
        await asyncio.sleep(0.2)  # the middleware's exit runs after the handler returned
    finally:
        await broker.stop()
    assert calls == 3
    assert policy._attempts == {}

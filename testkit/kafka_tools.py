"""Reading topics directly with aiokafka, for assertions about what is (and is not) on the bus."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from shared.kafka import topic_partitions
from shared.settings import KafkaSettings
from shared.topics import Topic


async def partition_ids(bootstrap: str, topic: str) -> list[int]:
    """The partitions of a topic, from the cluster's metadata (empty when the topic does not exist)."""
    return await topic_partitions(KafkaSettings(bootstrap_servers=bootstrap), topic)


async def read_topic(bootstrap: str, topic: str, *, timeout_s: float = 60) -> list[Any]:
    """Every record of `topic` from the beginning up to its current end, without joining a group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    records: list[Any] = []
    try:
        partitions = [TopicPartition(topic, p) for p in await partition_ids(bootstrap, topic)]
        if not partitions:
            return records
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        async with asyncio.timeout(timeout_s):
            while [tp for tp, offset in end.items() if await consumer.position(tp) < offset]:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def end_offsets(bootstrap: str, topic: str = Topic.REQUESTS) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await partition_ids(bootstrap, topic)]
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def start_group_at_end(bootstrap: str, group_id: str, topic: str = Topic.REQUESTS) -> None:
    """Commit a new group's offsets at the topic's end, so its consumer skips what earlier tests left there.

    Without it a fresh group starts at the earliest offset and re-verifies every earlier submission, which
    grows desk.requests (and every later test's backlog) with each test.
    """
    end = await end_offsets(bootstrap, topic)
    if not end:
        return  # the topic does not exist yet: there is nothing earlier to skip
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(end))  # assigned, not subscribed: commits without joining (and rebalancing) the group
        async with asyncio.timeout(60):
            while True:
                try:
                    await consumer.commit({tp: offset for tp, offset in end.items()})
                    return
                except KafkaError:
                    # The broker refuses an outsider's commit while the group still has members (a killed one
                    # stays until its session times out, 10 s by default).
                    await asyncio.sleep(1)
    finally:
        await consumer.stop()


async def replay(bootstrap: str, records: list[Any]) -> None:
    """Append records again, unchanged (key, value, headers): a redelivery as a consumer would see it."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(
                record.topic, record.value, key=record.key, headers=list(record.headers), partition=record.partition
            )
    finally:
        await producer.stop()


async def group_caught_up(bootstrap: str, group_id: str, topic: str) -> bool:
    """Whether the group has committed every partition of `topic` up to its end."""
    end = await end_offsets(bootstrap, topic)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group_id, partitions=list(end))
    finally:
        await admin.close()
    # An empty partition has nothing to commit (-1 until something arrives).
    return all(offset == 0 or (tp in committed and committed[tp].offset >= offset) for tp, offset in end.items())

"""The lag gauge: high watermark minus position per assigned partition, and never an exception into a consume loop."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from prometheus_client import REGISTRY

from shared.kafka import record_lag


class FakeConsumer:
    def __init__(self, highwaters: dict[TopicPartition, int | None], positions: dict[TopicPartition, Any]) -> None:
        self.highwaters, self.positions = highwaters, positions

    def assignment(self) -> set[TopicPartition]:
        return set(self.highwaters)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters[tp]

    async def position(self, tp: TopicPartition) -> int:
        position = self.positions[tp]
        if isinstance(position, Exception):
            raise position
        return int(position)


def lag(group: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "khedmat_consumer_lag", {"group": group, "topic": "desk.status", "partition": str(partition)}
    )


async def test_lag_per_partition_skipping_what_cannot_be_read() -> None:
    read, unfetched, revoked = (TopicPartition("desk.status", p) for p in (0, 1, 2))
    consumer = FakeConsumer(
        {read: 120, unfetched: None, revoked: 50},
        {read: 100, unfetched: 0, revoked: IllegalStateError("no longer assigned")},
    )
    await record_lag(consumer, "lag-test")
    assert lag("lag-test", 0) == 20
    assert lag("lag-test", 1) is None and lag("lag-test", 2) is None


async def test_a_cancel_while_the_lag_is_read_is_never_lost() -> None:
    # Python 3.11's asyncio.wait_for returned position()'s result to a task cancelled just as position() returned,
    # so a consume loop calling record_lag lost its stop() and ran on: the rebuild test hung 15 minutes on it.
    tps = {TopicPartition("desk.status", p) for p in range(6)}
    consumer = FakeConsumer(dict.fromkeys(tps, 10), dict.fromkeys(tps, 5))

    async def consume_loop() -> None:
        while True:  # as a consume loop: only a cancel ends it
            await record_lag(consumer, "lag-cancel-test")
            await asyncio.sleep(0)

    for steps in range(16):  # a cancel at every point of the loop
        task = asyncio.create_task(consume_loop())
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=1.0)
        if not done:
            task.cancel()  # lost: end it for the next round, and fail
        assert done, f"the cancel after {steps} loop steps was lost"
        assert task.cancelled()

"""A consumer group member on one topic, run by a background loop: what every consumer here shares.

`shared.keyed_consumer.KeyOrderedConsumer` (records one by one, concurrently across keys) and tracking's
projection consumer (batches folded in one transaction) differ in how they handle records and commit; they are
built with the same parts, join their group the same way, report their lag alike and stop their loop alike.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from opentelemetry import trace
from opentelemetry.trace import TracerProvider

from shared.kafka import LAG_EVERY_S, DeadLetterPolicy, make_consumer, record_lag
from shared.settings import KafkaSettings
from shared.tasks import cancel_and_wait


class GroupMember:
    """One member of consumer group `group_id` on `topic`; a subclass handles the records in `_run`."""

    # The loop task's name, before the topic's (for a dump of the running tasks).
    loop_name = "consume"

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        group_id: str,
        dead_letters: DeadLetterPolicy,
        client_id: str,
        tracer_provider: TracerProvider | None,
        tracer_name: str,
    ) -> None:
        self.kafka, self.topic, self.group_id = kafka, topic, group_id
        self.dead_letters = dead_letters
        self.client_id = client_id
        self.tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(tracer_name)
        self._consumer: AIOKafkaConsumer | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._last_lag = 0.0

    def _listener(self) -> ConsumerRebalanceListener:
        """What the member does when the group moves partitions to or from it."""
        raise NotImplementedError

    async def _run(self) -> None:
        """Consume until cancelled."""
        raise NotImplementedError

    async def start(self) -> None:
        """Join the group and consume in the background."""
        consumer = make_consumer(self.kafka, group_id=self.group_id, client_id=self.client_id)
        consumer.subscribe([self.topic], listener=self._listener())
        # Known to the listener before start(): the first assignment may come while start() still runs.
        self._consumer = consumer
        await consumer.start()
        self._loop_task = asyncio.create_task(self._run(), name=f"{self.loop_name}-{self.topic}")

    async def _stop_loop(self) -> None:
        await cancel_and_wait(self._loop_task)
        self._loop_task = None

    async def _leave(self) -> None:
        """Leave the group (after the loop stopped and what is done was committed)."""
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _record_lag_now_and_then(self, consumer: AIOKafkaConsumer) -> None:
        """The group's lag on this member's partitions, every LAG_EVERY_S at most (it asks the broker)."""
        now = time.monotonic()
        if now - self._last_lag >= LAG_EVERY_S:
            self._last_lag = now
            await record_lag(consumer, self.group_id)

"""Consume a topic with bounded concurrency, in order per key, committing only offsets whose work is done.

faststream handles one subscriber's messages one at a time, and its concurrent modes either commit before the
work (ACK_FIRST) or run one consumer per partition; neither lets inquiry keep 64 slow agency calls in flight
while a request's own events stay in order. This is the key-ordered model of Confluent's parallel consumer,
on aiokafka:

- records of one key (the tracking code) run one after another, in offset order; different keys run at once,
  at most `concurrency` records in flight (fetching pauses while every slot is taken);
- a partition's committed offset is its lowest record not yet done, so a crash redelivers every unfinished
  record and nothing after a gap is lost (handlers must be idempotent, which every handler here is);
- a failing record is retried in its lane with jittered backoff (its key waits, others go on), then
  dead-lettered with the reason (`DeadLetterPolicy`; `process_record`, which unit tests drive too);
- each record is processed in a CONSUMER span that continues the producer's trace (`traceparent` header).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from prometheus_client import Gauge, Histogram

from shared.envelope import decode_headers
from shared.group_member import GroupMember
from shared.kafka import DeadLetterPolicy, scrub
from shared.settings import KafkaSettings
from shared.telemetry import span_described_by_caller

log = logging.getLogger(__name__)

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
RecordHandler = Callable[[Record], Awaitable[None]]

IN_FLIGHT = Gauge("khedmat_consumer_in_flight", "Records dispatched and not yet done", ["group", "topic"])
# aiokafka's max.poll.interval.ms is 300 s: a saturated consumer polls (paused) at least this often.
POLL_KEEPALIVE_S = 30.0

HANDLER_SECONDS = Histogram(
    "khedmat_consumer_handler_seconds",
    "Time to process one record, retries included",
    ["group", "topic"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


async def process_record(
    record: Record, *, handle: Callable[[Record, int], Awaitable[None]], dead_letters: DeadLetterPolicy
) -> None:
    """Run one record to its end: `handle(record, attempt)` is retried with backoff while it fails, until the
    policy gives up and the record is dead-lettered with the reason."""
    attempt = 0
    while True:
        attempt += 1
        try:
            await handle(record, attempt)
            return
        except Exception as error:  # the policy decides: retry with backoff, or dead-letter and go on
            if dead_letters.gives_up(error, attempt):
                await _dead_letter(record, error, attempt, dead_letters)
                return
            await dead_letters.back_off(record, error, attempt)


async def _dead_letter(record: Record, error: Exception, attempts: int, dead_letters: DeadLetterPolicy) -> None:
    """Publish to `<topic>.dlq`; while Kafka refuses even that, keep trying (the offset stays uncommitted)."""
    delay = dead_letters.base_delay_s
    while True:
        try:
            await dead_letters.dead_letter(record, error, attempts=attempts)
            return
        except Exception as failure:  # Kafka itself is unreachable: nothing is dropped, wait and retry
            log.error("cannot dead-letter %s@%d yet: %s", record.topic, record.offset, scrub(repr(failure)))
            await asyncio.sleep(delay)
            delay = min(delay * 2, dead_letters.max_delay_s)


@dataclass
class PartitionProgress:
    """One partition's dispatched offsets not yet done; what may be committed is the lowest of them.

    Pure bookkeeping (no I/O), so the commit rule is unit-tested on its own.
    """

    undone: set[int] = field(default_factory=set)
    next_offset: int | None = None
    committed: int | None = None

    def dispatched(self, offset: int) -> None:
        self.undone.add(offset)
        self.next_offset = offset + 1 if self.next_offset is None else max(self.next_offset, offset + 1)

    def done(self, offset: int) -> None:
        self.undone.discard(offset)

    def committable(self) -> int | None:
        """The offset to commit (the next record to read after a restart), or None when nothing moved."""
        position = min(self.undone) if self.undone else self.next_offset
        return None if position is None or position == self.committed else position


@dataclass
class _Lane:
    """The records of one key waiting their turn, and the task working through them."""

    records: deque[tuple[Record, PartitionProgress]]
    task: asyncio.Task[None] | None = None


class KeyOrderedConsumer(GroupMember):
    """A consumer group member that runs records concurrently across keys and in order within one."""

    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        topic: str,
        group_id: str,
        handler: RecordHandler,
        dead_letters: DeadLetterPolicy,
        concurrency: int = 32,
        client_id: str = "khedmat",
        tracer_provider: TracerProvider | None = None,
        commit_interval_s: float = 0.2,
        drain_timeout_s: float = 30.0,
        stop_drain_s: float = 1.5,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        super().__init__(kafka, topic, group_id, dead_letters, client_id, tracer_provider, "khedmat.keyed_consumer")
        self.handler = handler
        self.concurrency = concurrency
        self.commit_interval_s = commit_interval_s
        # A rebalance may wait long for records to finish (the member stays in the group meanwhile); a stopping
        # process may not: its supervisor kills it after a grace period (honcho 5 s, Kubernetes 30 s), and
        # what is abandoned is uncommitted, so the group redelivers it.
        self.drain_timeout_s = drain_timeout_s
        self.stop_drain_s = stop_drain_s
        self._progress: dict[TopicPartition, PartitionProgress] = {}
        self._lanes: dict[bytes, _Lane] = {}
        self._in_flight = 0
        self._slot_freed = asyncio.Event()
        self._last_commit = 0.0
        self._last_poll = time.monotonic()
        self._in_flight_gauge = IN_FLIGHT.labels(group_id, topic)
        self._handler_seconds = HANDLER_SECONDS.labels(group_id, topic)

    # ----------------------------------------------------------------------------------------------- lifecycle
    def _listener(self) -> ConsumerRebalanceListener:
        return _DrainOnRevoke(self)

    async def stop(self) -> None:
        """Stop fetching, let in-flight records finish (bounded), commit what is done, leave the group."""
        await self._stop_loop()
        await self._drain(set(self._progress), timeout_s=self.stop_drain_s)
        # Past the drain budget: abandon what still runs; it is uncommitted, so the group redelivers it.
        unfinished = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._commit(force=True)
        await self._leave()

    # --------------------------------------------------------------------------------------------- fetch loop
    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while True:
            try:
                await self._poll_once(consumer)
            except Exception as error:  # never let consumption stop silently; aiokafka reconnects by itself
                log.error("consuming %s failed, polling again in 1s: %s", self.topic, scrub(repr(error), 300))
                await asyncio.sleep(1.0)

    async def _poll_once(self, consumer: AIOKafkaConsumer) -> None:
        free = self.concurrency - self._in_flight
        if free <= 0:
            # Every slot taken: wait for one. Fetched records stay buffered in aiokafka meanwhile (pausing
            # would drop and refetch them, which cost a third of the CPU in the benchmark).
            self._slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._slot_freed.wait()
            if time.monotonic() - self._last_poll > POLL_KEEPALIVE_S:
                # Slow agencies have held every slot for long: poll once, paused, so the group does not
                # take this member for hung (max.poll.interval.ms) and rebalance its partitions away.
                consumer.pause(*consumer.assignment())
                await consumer.getmany(timeout_ms=0)
                consumer.resume(*consumer.paused())
                self._last_poll = time.monotonic()
            await self._commit()
            return
        batches = await consumer.getmany(timeout_ms=100, max_records=free)
        self._last_poll = time.monotonic()
        await self._record_lag_now_and_then(consumer)
        for records in batches.values():
            for record in records:
                self._dispatch(record)
        await self._commit()

    def _dispatch(self, record: Record) -> None:
        tp = TopicPartition(record.topic, record.partition)
        progress = self._progress.setdefault(tp, PartitionProgress())
        progress.dispatched(record.offset)
        self._in_flight += 1
        self._in_flight_gauge.set(self._in_flight)
        key = record.key if record.key is not None else f"\x00partition-{record.partition}".encode()
        lane = self._lanes.get(key)
        if lane is not None:
            lane.records.append((record, progress))
            return
        lane = _Lane(deque([(record, progress)]))
        self._lanes[key] = lane
        lane.task = asyncio.create_task(self._work_through(key, lane), name="keyed-lane")

    async def _work_through(self, key: bytes, lane: _Lane) -> None:
        try:
            while lane.records:
                record, progress = lane.records[0]
                started = time.perf_counter()
                await self._process(record)
                self._handler_seconds.observe(time.perf_counter() - started)
                lane.records.popleft()
                progress.done(record.offset)
                self._in_flight -= 1
                self._in_flight_gauge.set(self._in_flight)
                self._slot_freed.set()
        finally:
            # No await between the last emptiness check and this: a record dispatched for this key after it
            # starts a new lane rather than waiting on a finished one.
            if self._lanes.get(key) is lane:
                del self._lanes[key]

    # ------------------------------------------------------------------------------------------ one record
    async def _process(self, record: Record) -> None:
        await process_record(record, handle=self._handle_in_span, dead_letters=self.dead_letters)

    async def _handle_in_span(self, record: Record, attempt: int) -> None:
        headers = decode_headers(record.headers or ())
        parent = propagate.extract(headers)
        attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.operation": "process",
            "messaging.operation.type": "process",
            "messaging.destination.name": record.topic,
            "messaging.consumer.group.name": self.group_id,
            "messaging.kafka.consumer.group": self.group_id,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.destination.partition": record.partition,
            "messaging.kafka.message.offset": record.offset,
            "messaging.message.body.size": len(record.value or b""),
            "khedmat.delivery_attempt": attempt,
        }
        if "ce_id" in headers:
            attributes["messaging.message.id"] = headers["ce_id"]
        if record.key is not None:
            # The key is the tracking code: an identifier, not personal data.
            attributes["messaging.kafka.message.key"] = record.key.decode(errors="replace")
        with span_described_by_caller(
            self.tracer, f"{record.topic} process", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        ) as span:
            try:
                await self.handler(record)
            except Exception as error:
                span.set_status(Status(StatusCode.ERROR, scrub(f"{type(error).__name__}: {error}", 200)))
                raise

    # ------------------------------------------------------------------------------------------ commits
    async def _commit(self, *, force: bool = False, only: set[TopicPartition] | None = None) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit < self.commit_interval_s:
            return
        self._last_commit = now
        consumer = self._consumer
        if consumer is None:
            return
        offsets = {
            tp: position
            for tp, progress in self._progress.items()
            if (only is None or tp in only) and (position := progress.committable()) is not None
        }
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except Exception as error:  # a rebalance under way: the next owner starts from the last commit
            log.warning("commit of %s failed: %s", self.topic, scrub(repr(error), 200))
            return
        for tp, position in offsets.items():
            progress = self._progress.get(tp)
            if progress is not None:
                progress.committed = position

    async def _drain(self, partitions: set[TopicPartition], *, timeout_s: float | None = None) -> None:
        """Wait (bounded: the rebalance budget unless told) until the records of these partitions are done."""
        progresses = [self._progress[tp] for tp in partitions if tp in self._progress]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.drain_timeout_s if timeout_s is None else timeout_s):
                while any(progress.undone for progress in progresses):
                    self._slot_freed.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.5):
                            await self._slot_freed.wait()

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Before the group moves these partitions elsewhere: finish their records and commit them."""
        if not revoked:
            return
        await self._drain(revoked)
        await self._commit(force=True, only=revoked)
        for tp in revoked:
            # Records still running past the drain budget finish on an orphaned progress object: they can no
            # longer move this member's commits, and the new owner redelivers them (handlers are idempotent).
            self._progress.pop(tp, None)


class _DrainOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: KeyOrderedConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.owner.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        return None

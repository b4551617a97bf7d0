"""Feeding inquiry submissions straight onto desk.requests and following what it publishes back.

Used by the tests that run inquiry as a real process against the real broker and sandbox agencies.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from sandbox.agencies import registered_birth_date
from shared.catalog import load_catalog
from shared.domain.tracking_code import TrackingCodeGenerator
from shared.envelope import cloudevent_headers, event_key, event_value
from shared.events import Applicant, RequestSubmitted, StatusChanged
from shared.topics import Topic
from testkit.data import SERVICE_ID, national_id
from testkit.events import submitted_change


def submissions(
    count: int, service_id: str = SERVICE_ID, fields: dict[str, str] | None = None
) -> list[RequestSubmitted]:
    """Counting submissions of a service, with birth dates the sandbox civil registry confirms."""
    service = load_catalog().get(service_id)
    assert service is not None
    # Every replica id under one key: unique codes, and 16 replicas' capacity for the benchmark's bursts.
    key = uuid.uuid4().bytes * 2
    generators = [TrackingCodeGenerator(key=key, replica_id=replica) for replica in range(16)]
    made = []
    for index in range(count):
        nid = national_id()
        made.append(
            RequestSubmitted(
                tracking_code=generators[index % len(generators)].next_code(),
                service_id=service_id,
                catalog_version=service.version,
                agency=service.agency,
                applicant=Applicant(national_id=nid, mobile="09121234567", birth_date=registered_birth_date(nid)),
                fields={"reason": "lost"} if fields is None else fields,
                accept_by=datetime.now(UTC) + timedelta(minutes=10),
            )
        )
    return made


def submitted_changes(requests: list[RequestSubmitted]) -> list[StatusChanged]:
    """The StatusChanged (to SUBMITTED) tracking derives from each submission, under the same derived ids."""
    return [submitted_change(request) for request in requests]


async def send_all(
    producer: AIOKafkaProducer,
    events: Sequence[RequestSubmitted | StatusChanged],
    *,
    topic: str = Topic.REQUESTS,
    source: str = "/test",
) -> None:
    """Publish events as the services do (CloudEvents headers, keyed by tracking code), all acknowledged."""
    sent = [
        await producer.send(
            topic,
            event_value(event),
            key=event_key(event),
            headers=[(k, v.encode()) for k, v in cloudevent_headers(event, source=source).items()],
        )
        for event in events
    ]
    await asyncio.gather(*sent)


class Follower:
    """Follows desk.requests from given offsets and keeps every event about our tracking codes, by type."""

    def __init__(self, bootstrap: str, start: dict[TopicPartition, int], codes: set[str]) -> None:
        self.bootstrap, self.start, self.codes = bootstrap, start, codes
        self.events: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
        self._task: asyncio.Task[None] | None = None

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(list(self.start))
            for tp, offset in self.start.items():
                consumer.seek(tp, offset)
            while True:
                for batch in (await consumer.getmany(timeout_ms=100)).values():
                    for record in batch:
                        try:
                            body = json.loads(record.value)
                        except ValueError:
                            continue  # a poison record some test put there on purpose
                        if isinstance(body, dict) and body.get("tracking_code") in self.codes:
                            self.events[body["event_type"]][body["tracking_code"]].append(body)
        finally:
            await consumer.stop()

    def __enter__(self) -> Follower:
        self._task = asyncio.create_task(self._follow())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()

    @property
    def verification_ids(self) -> dict[str, set[str]]:
        """The distinct VerificationCompleted ids seen per tracking code."""
        return {
            code: {body["event_id"] for body in bodies} for code, bodies in self.events["VerificationCompleted"].items()
        }

    async def until_verified(self, count: int, timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.events["VerificationCompleted"]) < count:
                assert self._task is not None and not self._task.done(), "the follower stopped"
                await asyncio.sleep(0.02)


async def agency_stats(sandbox_url: str) -> dict[str, dict[str, int]]:
    """The sandbox's per-agency counters (calls, errors, drops...)."""
    async with httpx.AsyncClient(base_url=sandbox_url) as client:
        response = await client.get("/control/stats")
        response.raise_for_status()
        stats: dict[str, dict[str, int]] = response.json()
        return stats

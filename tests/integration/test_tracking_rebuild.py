"""Rebuild acceptance: over 100,000 events, on SQLite and on PostgreSQL, the rebuilt projection is the live one,
row by row; lookups are answered throughout; the rebuild writes no StatusChanged; and with the live fold still
moving, the swap waits until the staging tables have caught up with it."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import MetaData, Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.tracking.consumers import ProjectionConsumer
from services.tracking.domain_terms import catalog_terms
from services.tracking.service import Projector, lookup, stored_offsets
from services.tracking.service_rebuild import rebuild
from services.tracking.store import LIVE_TABLES, OUTBOX_TABLE, ProjectionTables
from services.tracking.store_migrations import migrate
from shared.catalog import load_catalog
from shared.db import make_engine, make_sessionmaker
from shared.domain.working_days import load_calendar
from shared.events import RequestEvent, RequestSubmitted, parse_status_event
from shared.kafka import DeadLetterPolicy, ensure_topics
from shared.settings import KafkaSettings
from shared.topics import LOG_APPEND_TIME, TopicSpec
from testkit.infra import Servers
from testkit.kafka_tools import end_offsets
from testkit.tracking_stream import lifecycles, produce

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(900)]

REQUESTS = 17_000  # about 6 events each: the stream has more than 100,000
LATER_REQUESTS = 500
KEY = b"rebuild-test-lookup-key"


@dataclass(frozen=True)
class Stream:
    topic: str
    events: list[RequestEvent]
    end: int


@pytest.fixture
def stream(servers: Servers) -> Iterator[Stream]:
    """A topic of its own with the whole history, for each database's run (the run appends to it)."""
    topic = f"test.rebuild.{uuid.uuid4().hex[:8]}"
    events = list(lifecycles(REQUESTS, seed=5))

    async def publish() -> int:
        kafka = KafkaSettings(bootstrap_servers=servers.kafka_bootstrap)
        await ensure_topics(kafka, [TopicSpec(topic, configs=dict(LOG_APPEND_TIME))])
        await produce(servers.kafka_bootstrap, topic, events)
        return sum((await end_offsets(servers.kafka_bootstrap, topic)).values())

    end = asyncio.run(publish())
    assert end == len(events) >= 100_000
    yield Stream(topic, events, end)


async def rows_of(engine: AsyncEngine, tables: ProjectionTables) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the projection's tables, in primary-key order."""
    found = {}
    async with engine.connect() as connection:
        for kind, table in zip(("requests", "timeline", "offsets"), tables.all(), strict=True):
            rows = await connection.execute(select(table).order_by(*table.primary_key.columns))
            found[kind] = [tuple(row) for row in rows]
    return found


def named(tables: ProjectionTables, names: list[str]) -> ProjectionTables:
    metadata = MetaData()
    copies: list[Table] = [
        table.to_metadata(metadata, name=name) for table, name in zip(tables.all(), names, strict=True)
    ]
    return ProjectionTables(*copies)


async def outbox_causes(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        values = await connection.execute(select(OUTBOX_TABLE.c.value).order_by(OUTBOX_TABLE.c.id))
        return [parse_status_event(value.encode()).caused_by for (value,) in values]


async def folded(projector: Projector, topic: str) -> int:
    return sum((await stored_offsets(sessions=projector.sessions, topic=topic)).values())


async def until_folded(projector: Projector, topic: str, end: int, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while await folded(projector, topic) < end:
            await asyncio.sleep(0.2)


async def test_rebuild_of_100k_events_is_the_live_projection_and_texts_nobody(
    servers: Servers, stream: Stream, database_url: str
) -> None:
    kafka = KafkaSettings(bootstrap_servers=servers.kafka_bootstrap)
    engine = make_engine(database_url)
    await migrate(engine)
    projector = Projector(make_sessionmaker(engine), KEY, catalog_terms(load_catalog()), load_calendar())
    live = ProjectionConsumer(
        kafka=kafka,
        topic=stream.topic,
        group_id=f"rebuild-live-{uuid.uuid4().hex[:8]}",
        projector=projector,
        dead_letters=DeadLetterPolicy(),
        client_id="tracking-test",
        tracer_provider=TracerProvider(),
        max_batch=1000,
    )
    submitted = [event for event in stream.events if isinstance(event, RequestSubmitted)]
    codes = {event.tracking_code for event in submitted}
    probes = random.Random(3).sample(submitted, 40)
    answered = 0
    lookups_running = True

    async def keep_looking_up() -> None:
        # A citizen's lookups go on during the rebuild and its swap; every one is answered.
        nonlocal answered
        while lookups_running:
            for event in probes:
                found = await lookup(
                    sessions=projector.sessions,
                    tracking_code=event.tracking_code,
                    national_id=event.applicant.national_id,
                    lookup_key=KEY,
                )
                assert found is not None, f"{event.tracking_code} went missing during the rebuild"
                answered += 1
            await asyncio.sleep(0.01)

    await live.start()
    try:
        await until_folded(projector, stream.topic, stream.end, 600)
        live_rows = await rows_of(engine, LIVE_TABLES)
        status_changes = await outbox_causes(engine)

        # 1. The live fold idle: the rebuild replays the whole history and swaps in what it built.
        looking = asyncio.create_task(keep_looking_up())
        report = await rebuild(engine=engine, projector=projector, kafka=kafka, topic=stream.topic, drop_retired=False)
        lookups_running = False
        await looking
        assert report.swapped and report.events == stream.end
        print(
            f"\n[{engine.dialect.name}] rebuilt {report.events} events in {report.seconds:.1f} s "
            f"({report.events_per_second:.0f}/s); {answered} lookups answered meanwhile"
        )
        assert answered > 0
        rebuilt_rows = await rows_of(engine, LIVE_TABLES)
        retired_rows = await rows_of(engine, named(LIVE_TABLES, report.retired))
        assert retired_rows == live_rows  # the old tables are what the live fold had built
        for kind in live_rows:
            assert rebuilt_rows[kind] == live_rows[kind], f"{kind} differs after the rebuild"
        assert len(rebuilt_rows["requests"]) == len(codes)
        # Not one StatusChanged for the replayed history: notify has nothing to send.
        assert await outbox_causes(engine) == status_changes

        # 2. The live fold moving: new requests arrive while a second rebuild runs; the swap waits for them.
        later = list(lifecycles(LATER_REQUESTS, seed=6))
        producing = asyncio.create_task(produce(servers.kafka_bootstrap, stream.topic, later))
        second = await rebuild(engine=engine, projector=projector, kafka=kafka, topic=stream.topic)
        await producing
        end = stream.end + len(later)
        await until_folded(projector, stream.topic, end, 120)
        assert second.swapped
        async with engine.connect() as connection:
            requests = await connection.scalar(select(func.count()).select_from(LIVE_TABLES.requests))
        assert requests == len(codes) + LATER_REQUESTS
        causes = await outbox_causes(engine)
        new_causes = causes[len(status_changes) :]
        later_ids = {event.event_id for event in later}
        assert causes[: len(status_changes)] == status_changes
        assert new_causes and set(new_causes) <= later_ids, "only the new events changed a status"
        assert len(new_causes) == len(set(new_causes)), "each StatusChanged once"
    finally:
        lookups_running = False
        await live.stop()
        await engine.dispose()

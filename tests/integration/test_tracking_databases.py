"""The projection on both databases tracking supports, SQLite and PostgreSQL (a real server): interleaved
partitions, duplicates and redelivered batches give what each request alone gives; lookups and the SLA query."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.tracking.service import (
    Delivered,
    Position,
    Projector,
    Sessions,
    lookup,
)
from services.tracking.service_sla import SlaWatcher
from services.tracking.store_migrations import migrate
from shared.db import make_engine, make_sessionmaker
from shared.events import SlaBreached
from tests.unit.test_tracking import (
    CALENDAR,
    LOOKUP_KEY,
    NATIONAL_ID,
    OTHER_NATIONAL_ID,
    T0,
    TERMS,
    TOPIC,
    interleave,
    many_requests,
    projection_of,
    snapshot,
    submitted,
)

pytestmark = pytest.mark.asyncio


async def database(url: str) -> tuple[Sessions, AsyncEngine]:
    engine = make_engine(url)
    await migrate(engine)
    return make_sessionmaker(engine), engine


@pytest.mark.parametrize("seed", [3, 4])
async def test_interleaved_duplicated_and_redelivered_batches_fold_as_each_request_alone(
    database_url: str, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    histories = many_requests(rng, 40)
    codes = [history[0].tracking_code for history in histories]

    # Reference: each request alone on its own partition, one event per transaction, on SQLite.
    alone, alone_engine = await database(f"sqlite+aiosqlite:///{tmp_path / 'alone.db'}")
    single = Projector(alone, LOOKUP_KEY, TERMS, CALENDAR, now=lambda: T0)
    for partition, history in enumerate(histories):
        for offset, event in enumerate(history):
            await single.fold_batch([Delivered(Position(TOPIC, partition, offset), event)])
    expected = await projection_of(alone, codes)
    await alone_engine.dispose()

    sessions, engine = await database(database_url)
    projector = Projector(sessions, LOOKUP_KEY, TERMS, CALENDAR, now=lambda: T0)
    offsets: dict[int, int] = {}
    delivered = []
    for partition, event in interleave(rng, histories, partitions=4):
        offsets[partition] = offsets.get(partition, -1) + 1
        delivered.append(Delivered(Position(TOPIC, partition, offsets[partition]), event))
    for start in range(0, len(delivered), 23):
        await projector.fold_batch(delivered[start : start + 23])
    assert await projection_of(sessions, codes) == expected

    # A rebalance redelivers from an older position, in other batch sizes: nothing changes.
    before = await snapshot(sessions)
    replay_from = rng.randrange(len(delivered))
    for start in range(replay_from, len(delivered), 41):
        await projector.fold_batch(delivered[start : start + 41])
    assert await snapshot(sessions) == before
    await engine.dispose()


async def test_lookup_and_the_sla_query_on_each_database(database_url: str) -> None:
    sessions, engine = await database(database_url)
    projector = Projector(sessions, LOOKUP_KEY, TERMS, CALENDAR)
    request = submitted()
    await projector.fold_batch([Delivered(Position(TOPIC, 0, 0), request)])

    found = await lookup(
        sessions=sessions, tracking_code=request.tracking_code, national_id=NATIONAL_ID, lookup_key=LOOKUP_KEY
    )
    assert found is not None and found[0].due_on is not None
    assert found[0].submitted_at == request.occurred_at and found[0].submitted_at.tzinfo is not None
    wrong = await lookup(
        sessions=sessions, tracking_code=request.tracking_code, national_id=OTHER_NATIONAL_ID, lookup_key=LOOKUP_KEY
    )
    assert wrong is None

    due = found[0].due_on
    published: list[SlaBreached] = []

    async def publish(event: SlaBreached) -> None:
        published.append(event)

    day_after = datetime.combine(date.fromordinal(due.toordinal() + 1), datetime.min.time(), tzinfo=UTC)
    watcher = SlaWatcher(sessions=sessions, publish=publish, now=lambda: day_after.replace(hour=9))
    assert await watcher.check_once() == 1
    assert published[0].due_on == due
    await projector.fold_batch([Delivered(Position(TOPIC, 0, 1), published[0])])
    assert await SlaWatcher(sessions=sessions, publish=publish, now=lambda: day_after.replace(hour=9)).check_once() == 0
    await engine.dispose()

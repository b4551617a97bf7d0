"""tracking's rebuild benchmark: events per second folded by `rebuild` (the live fold's own code, a fetched batch
per transaction) beside a raw aiokafka consume of the same topic in the same run, on SQLite and on PostgreSQL.

`python -m bench.tracking_bench [--requests N]`, on the benchmarks' own fresh Kafka and PostgreSQL. The live
projection's offsets are set at the topic's end first, so the rebuild folds the whole topic and then swaps.
The raw baseline reads the same records and does nothing with them; the ratio says what the projection costs.
"""

from __future__ import annotations

import statistics
import uuid
from pathlib import Path

from sqlalchemy import insert

from bench.common import BENCH_KAFKA, bench_database, run_measure
from services.tracking.domain_terms import catalog_terms
from services.tracking.service import Projector
from services.tracking.service_rebuild import rebuild
from services.tracking.store import LIVE_TABLES
from services.tracking.store_migrations import migrate
from shared.catalog import load_catalog
from shared.db import make_engine, make_sessionmaker
from shared.domain.working_days import load_calendar
from shared.kafka import ensure_topics
from shared.settings import KafkaSettings
from shared.topics import LOG_APPEND_TIME, TopicSpec
from testkit.kafka_tools import end_offsets
from testkit.tracking_stream import lifecycles, produce, raw_consume

KEY = b"bench-lookup-key"


async def rebuild_rate(database_url: str, topic: str) -> tuple[int, float]:
    """Rebuild the whole topic into a fresh projection on `database_url`: (events, seconds)."""
    engine = make_engine(database_url)
    try:
        await migrate(engine)
        ends = await end_offsets(BENCH_KAFKA, topic)
        # As if the live fold had reached the end: the rebuild's target, and its swap condition.
        async with engine.begin() as connection:
            await connection.execute(
                insert(LIVE_TABLES.offsets),
                [{"topic": topic, "partition": tp.partition, "next_offset": end} for tp, end in ends.items()],
            )
        projector = Projector(make_sessionmaker(engine), KEY, catalog_terms(load_catalog()), load_calendar())
        report = await rebuild(
            engine=engine, projector=projector, kafka=KafkaSettings(bootstrap_servers=BENCH_KAFKA), topic=topic
        )
        assert report.swapped
        return report.events, report.seconds
    finally:
        await engine.dispose()


async def measure(requests: int, workdir: Path) -> None:
    topic = f"bench.tracking.{uuid.uuid4().hex[:6]}"
    await ensure_topics(KafkaSettings(bootstrap_servers=BENCH_KAFKA), [TopicSpec(topic, configs=dict(LOG_APPEND_TIME))])
    count = await produce(BENCH_KAFKA, topic, lifecycles(requests, seed=9))
    raws = [await raw_consume(BENCH_KAFKA, topic) for _ in range(3)]
    raw_rate = statistics.median(records / seconds for records, seconds in raws)
    print(f"tracking rebuild benchmark: {count} events of {requests} requests on 6 partitions")
    print(f"  raw aiokafka consume of the topic (median of 3)         = {raw_rate:10.0f}/s")
    events, seconds = await rebuild_rate(f"sqlite+aiosqlite:///{workdir / 'tracking.db'}", topic)
    sqlite_rate = events / seconds
    print(f"  rebuild on SQLite:     {events} events in {seconds:6.1f} s = {sqlite_rate:10.0f}/s")
    async with bench_database() as url:
        events, seconds = await rebuild_rate(url, topic)
    postgres_rate = events / seconds
    print(f"  rebuild on PostgreSQL: {events} events in {seconds:6.1f} s = {postgres_rate:10.0f}/s")
    print(
        f"  ratio rebuild/raw consume: SQLite {sqlite_rate / raw_rate:.4f}, PostgreSQL {postgres_rate / raw_rate:.4f}"
    )
    print("  (aim: 0.5)")


def main() -> None:
    run_measure("tracking", measure, "requests", 17_000, "request lifecycles (about 6 events each)")


if __name__ == "__main__":
    main()

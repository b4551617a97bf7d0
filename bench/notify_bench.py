"""notify's benchmark: notifications per second end to end, beside a raw consume of the same topic in the same run.

`python -m bench.notify_bench [--changes N]`, on the benchmarks' own fresh Kafka, Redis and PostgreSQL. The sandbox
SMS gateway (zero latency, posting a delivery receipt for each message to notify, as a provider's webhook does)
and notify run as processes. Each applicant's contact is consumed first; then N StatusChanged go onto desk.status
at once, and the clock runs until notify has recorded every SMS as handed to the gateway: the whole path of a
notification (consume, record, render, pace through Redis, send over HTTP, record the outcome), with notify's
concurrency and its receipt webhook busy beside it, on SQLite and on PostgreSQL.

Two baselines from the same run: a bare aiokafka consume of desk.status (what reading costs) and N bare HTTP
sends to the same gateway at notify's concurrency (what the gateway and HTTP cost).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from bench.common import BENCH_KAFKA, BENCH_POSTGRES, BENCH_REDIS, Result, run_measure
from shared.db import make_engine
from shared.kafka import ensure_topics
from shared.settings import KafkaSettings
from shared.topics import Topic, core_topics
from testkit.databases import postgres_database
from testkit.harness import Stack
from testkit.infra import Servers
from testkit.inquiry_stream import send_all, submissions, submitted_changes
from testkit.kafka_tools import group_caught_up
from testkit.tracking_stream import raw_consume

CONCURRENCY = 32
# Far above what one process reaches, so pacing is not the bottleneck; its Redis round trip per send still counts.
PACE = "100000/second"


async def handed_over(database_url: str) -> tuple[int, list[tuple[datetime, datetime]]]:
    """How many SMS notify recorded as handed to the gateway, and (created, sent) of each."""
    engine = make_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    text(
                        "SELECT created_at, sent_at FROM notify_notification "
                        "WHERE state IN ('sent', 'delivered') AND sent_at IS NOT NULL"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    return len(rows), [(created, sent) for created, sent in rows]


def _aware(moment: datetime | str) -> datetime:
    # SQLite hands back what was stored as text; PostgreSQL an aware datetime.
    return moment if isinstance(moment, datetime) else datetime.fromisoformat(moment)


async def notify_rate(label: str, database_url: str, count: int, workdir: Path) -> Result:
    """Run sandbox + notify on `database_url` and time `count` notifications through them."""
    servers = Servers(kafka_bootstrap=BENCH_KAFKA, redis_url=BENCH_REDIS, postgres_url=BENCH_POSTGRES, origin="local")
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    stack = Stack(
        servers,
        workdir / label,
        group_prefix=prefix,
        extra_env={
            "NOTIFY_DATABASE_URL": database_url,
            "NOTIFY_SMS_RATE_LIMIT": PACE,
            "NOTIFY_CONCURRENCY": str(CONCURRENCY),
        },
    )
    await asyncio.to_thread(stack.start_groups_at_end)
    requests = submissions(count)  # the contacts: a mobile and no email, so one SMS each
    changes = submitted_changes(requests)
    try:
        for name in ("sandbox", "notify"):
            stack.start(name)
        await asyncio.to_thread(stack.wait_ready, ("sandbox", "notify"))
        producer = AIOKafkaProducer(bootstrap_servers=BENCH_KAFKA, acks="all", linger_ms=5)
        await producer.start()
        try:
            await send_all(producer, requests)
        finally:
            await producer.stop()
        deadline = time.monotonic() + 300
        while not await group_caught_up(BENCH_KAFKA, f"{prefix}-notify-contacts", Topic.REQUESTS):
            if time.monotonic() > deadline:
                raise TimeoutError("notify did not take the contacts in 300 s")
            await asyncio.sleep(0.2)

        started = time.perf_counter()
        producer = AIOKafkaProducer(bootstrap_servers=BENCH_KAFKA, acks="all", linger_ms=5, enable_idempotence=True)
        await producer.start()
        try:
            await send_all(producer, changes, topic=Topic.STATUS, source="/bench")
        finally:
            await producer.stop()
        done = 0
        while done < count:
            if time.perf_counter() - started > 900:
                raise TimeoutError(f"{done} of {count} notifications after 900 s:\n{stack.tail('notify')}")
            await asyncio.sleep(0.25)
            done, _ = await handed_over(database_url)
        seconds = time.perf_counter() - started
        _, times = await handed_over(database_url)
        async with httpx.AsyncClient(timeout=60) as client:
            at_gateway = len((await client.get(stack.sms_url + "/messages")).json())
        if at_gateway != count:
            raise AssertionError(f"the gateway holds {at_gateway} messages, not {count}")
    finally:
        await asyncio.to_thread(stack.stop_all)
    # From the row's creation (the change consumed) to the gateway's acceptance being recorded.
    latencies = [(_aware(sent) - _aware(created)).total_seconds() for created, sent in times]
    return Result(f"notify on {label} (end to end)", count, seconds, latencies)


async def raw_gateway_rate(count: int, workdir: Path) -> Result:
    """N form posts straight to a fresh sandbox gateway, `CONCURRENCY` at a time: the gateway's own ceiling."""
    servers = Servers(kafka_bootstrap=BENCH_KAFKA, redis_url=BENCH_REDIS, postgres_url=BENCH_POSTGRES, origin="local")
    stack = Stack(servers, workdir / "raw-gateway", group_prefix="bench-raw")
    stack.start("sandbox")
    try:
        await asyncio.to_thread(stack.wait_ready, ("sandbox",))
        slots = asyncio.Semaphore(CONCURRENCY)
        latencies: list[float] = []
        async with httpx.AsyncClient(base_url=stack.sms_url, timeout=30) as client:

            async def send(index: int) -> None:
                async with slots:
                    began = time.perf_counter()
                    response = await client.post(
                        "/v1/sandbox-sms-key/sms/send.json",
                        data={"receptor": "09121234567", "message": f"raw {index}", "localid": str(index)},
                    )
                    response.raise_for_status()
                    latencies.append(time.perf_counter() - began)

            started = time.perf_counter()
            await asyncio.gather(*(send(index) for index in range(count)))
            seconds = time.perf_counter() - started
    finally:
        await asyncio.to_thread(stack.stop_all)
    return Result("raw HTTP sends to the gateway", count, seconds, latencies)


async def measure(count: int, workdir: Path) -> None:
    await ensure_topics(KafkaSettings(bootstrap_servers=BENCH_KAFKA), core_topics())
    print(f"notify benchmark: {count} status changes, one SMS each, concurrency {CONCURRENCY}")
    sqlite = await notify_rate("SQLite", f"sqlite+aiosqlite:///{workdir / 'notify.db'}", count, workdir)
    async with postgres_database(BENCH_POSTGRES, prefix="khedmat_bench") as url:
        postgres = await notify_rate("PostgreSQL", url, count, workdir)
    raws = [await raw_consume(BENCH_KAFKA, Topic.STATUS) for _ in range(3)]
    raw_rate = statistics.median(records / seconds for records, seconds in raws)
    gateway = await raw_gateway_rate(count, workdir)
    print(f"  raw aiokafka consume of desk.status (median of 3)       = {raw_rate:10.0f}/s")
    print(f"  {gateway.line()}")
    for result in (sqlite, postgres):
        print(f"  {result.line()}")
    print(f"  ratio notify/raw consume: SQLite {sqlite.rate / raw_rate:.4f}, PostgreSQL {postgres.rate / raw_rate:.4f}")
    print(
        f"  ratio notify/raw gateway sends: SQLite {sqlite.rate / gateway.rate:.3f}, "
        f"PostgreSQL {postgres.rate / gateway.rate:.3f}"
    )


def main() -> None:
    run_measure("notify", measure, "changes", 5_000, "status changes, one SMS each")


if __name__ == "__main__":
    main()

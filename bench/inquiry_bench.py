"""Inquiry's verification rate on real Kafka and the sandbox agencies, beside a raw consume of the same records.

One inquiry process (its configured concurrency, SQLite, Redis answer cache and rate limits as in production
but with the agencies' call budgets lifted) verifies a burst of submissions of the duplicate birth certificate
(one identity inquiry at the civil registry each, every applicant new, so the cache never answers):

1. with the sandbox answering at once: verifications per second, beside a raw aiokafka consumer reading the
   very same submission records (the ceiling one Python process reaches just consuming the topic);
2. with the civil registry answering after 200 ms, for each configured concurrency: verifications per
   second divided by the ideal, concurrency / 0.2 s (how well concurrency turns into throughput while the
   agency's latency is the bottleneck; past the process's CPU ceiling it is the CPU instead).

Rates come from the broker's append times of the first and last VerificationCompleted of a burst (desk.requests
is LogAppendTime), so the follower's own speed does not enter them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import (
    BENCH_KAFKA,
    bench_env,
    start_bench_servers,
    start_process,
    stop_bench_servers,
    wait_ready,
)
from shared.events import RequestSubmitted
from testkit.inquiry_stream import send_all, submissions
from testkit.kafka_tools import end_offsets

SANDBOX_PORT = 18190
INQUIRY_PORT = 18183
AGENCY = "civil-registry"


async def follow_verifications(
    bootstrap: str, start: dict[TopicPartition, int], codes: set[str], timeout_s: float
) -> list[int]:
    """The broker append times (ms) of the VerificationCompleted of `codes`, once all have appeared."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    stamps: dict[str, int] = {}
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        async with asyncio.timeout(timeout_s):
            while len(stamps) < len(codes):
                for batch in (await consumer.getmany(timeout_ms=200, max_records=5000)).values():
                    for record in batch:
                        if b'"VerificationCompleted"' not in record.value:
                            continue
                        body = json.loads(record.value)
                        if body["event_type"] == "VerificationCompleted" and body["tracking_code"] in codes:
                            stamps.setdefault(body["tracking_code"], record.timestamp)
    finally:
        await consumer.stop()
    return sorted(stamps.values())


async def verify_burst(bootstrap: str, events: list[RequestSubmitted], timeout_s: float) -> float:
    """Publish the burst, wait for every verification; verifications per second by the broker's clock."""
    start = await end_offsets(bootstrap)
    codes = {event.tracking_code for event in events}
    follower = asyncio.create_task(follow_verifications(bootstrap, start, codes, timeout_s))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        await send_all(producer, events, source="/bench")
    finally:
        await producer.stop()
    stamps = await follower
    return (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1000)


async def raw_consume(bootstrap: str, start: dict[TopicPartition, int], count: int) -> float:
    """Records per second one aiokafka consumer reads from the same offsets (the submissions of a burst)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        seen = 0
        began = time.perf_counter()
        while seen < count:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=10000)).values():
                seen += len(batch)
        return seen / (time.perf_counter() - began)
    finally:
        await consumer.stop()


def set_latency(latency_ms: int) -> None:
    response = httpx.put(f"http://127.0.0.1:{SANDBOX_PORT}/control/faults/{AGENCY}", json={"latency_ms": latency_ms})
    response.raise_for_status()


@dataclass
class Run:
    """What one inquiry process (one configured concurrency) achieved."""

    concurrency: int
    slow_count: int
    slow_rate: float
    fast_rate: float | None = None
    raw_rate: float | None = None

    @property
    def ideal(self) -> float:
        return self.concurrency / 0.2

    @property
    def efficiency(self) -> float:
        return self.slow_rate / self.ideal


async def measure(concurrency: int, count: int, *, with_zero_latency: bool) -> Run:
    bootstrap = BENCH_KAFKA
    set_latency(0)
    # Warm-up: connections, pools, the group's assignment, SQLite's file.
    await verify_burst(bootstrap, submissions(200), timeout_s=120)
    fast = raw = None
    if with_zero_latency:
        events = submissions(count)
        start = await end_offsets(bootstrap)
        fast = await verify_burst(bootstrap, events, timeout_s=600)
        raw = statistics.median([await raw_consume(bootstrap, start, count) for _ in range(5)])
    set_latency(200)
    # About eight seconds' worth at the ideal rate, so ramp-up and drain are a small part of the burst.
    slow_count = max(500, int(concurrency / 0.2 * 8))
    slow = await verify_burst(bootstrap, submissions(slow_count), timeout_s=600)
    return Run(concurrency, slow_count, slow, fast, raw)


def start_inquiry(concurrency: int, workdir: Path) -> subprocess.Popen[bytes]:
    return start_process(
        "services.inquiry",
        {
            **bench_env(),
            "INQUIRY_PORT": str(INQUIRY_PORT),
            # One group for every run: each process resumes where the previous one committed.
            "INQUIRY_GROUP_ID": "bench-inquiry",
            "INQUIRY_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'inquiry.db'}",
            "INQUIRY_AGENCIES_BASE_URL": f"http://127.0.0.1:{SANDBOX_PORT}",
            "INQUIRY_CONCURRENCY": str(concurrency),
            # The sandbox grants any budget: measure inquiry, not the production call budget of 100/s.
            "INQUIRY_AGENCY_RATE_LIMITS": "{}",
            "KHEDMAT_LOG_LEVEL": "WARNING",
        },
        workdir / f"inquiry-{concurrency}.log",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=3000, help="submissions in the zero-latency burst")
    parser.add_argument(
        "--concurrency",
        default="16,64",
        help="INQUIRY_CONCURRENCY values to run at 200 ms, comma-separated (the largest also runs at zero latency)",
    )
    args = parser.parse_args()
    concurrencies = [int(value) for value in args.concurrency.split(",")]
    start_bench_servers()
    workdir = Path(tempfile.mkdtemp(prefix="bench-inquiry-"))
    sandbox = start_process(
        "sandbox",
        {
            "SANDBOX_AGENCIES_PORT": str(SANDBOX_PORT),
            "SANDBOX_SMS_PORT": "0",
            "SANDBOX_SMTP_PORT": "0",
            "SANDBOX_SMTP_HTTP_PORT": "0",
            "KHEDMAT_LOG_LEVEL": "WARNING",
        },
        workdir / "sandbox.log",
    )
    runs: list[Run] = []
    try:
        wait_ready(f"http://127.0.0.1:{SANDBOX_PORT}/control/stats")
        for concurrency in concurrencies:
            inquiry = start_inquiry(concurrency, workdir)
            try:
                wait_ready(f"http://127.0.0.1:{INQUIRY_PORT}/readyz")
                zero = concurrency == max(concurrencies)
                runs.append(asyncio.run(measure(concurrency, args.count, with_zero_latency=zero)))
            finally:
                inquiry.terminate()
                inquiry.wait(timeout=30)
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)
        stop_bench_servers()
    print("inquiry benchmark: one inquiry process, acks=all, SQLite, Redis; one identity inquiry per request")
    for run in runs:
        if run.fast_rate is not None and run.raw_rate is not None:
            print(
                f"  concurrency {run.concurrency}, sandbox at zero latency: {args.count} verifications = "
                f"{run.fast_rate:.1f}/s"
            )
            print(f"  raw aiokafka consume of the same {args.count} records (median of 5) = {run.raw_rate:.0f}/s")
            print(f"  ratio inquiry/raw consume = {run.fast_rate / run.raw_rate:.4f}")
    for run in runs:
        print(
            f"  concurrency {run.concurrency}, civil registry at 200 ms: {run.slow_count} verifications = "
            f"{run.slow_rate:.1f}/s; ideal {run.ideal:.0f}/s; efficiency {run.efficiency:.2f}  (aim: >= 0.8)"
        )


if __name__ == "__main__":
    main()

"""Intake at saturation over HTTP with real Kafka (acks=all), beside a raw aiokafka producer in the same run.

Both send the same RequestSubmitted events (CloudEvents headers, tracking-code keys) to `desk.requests` with
the same number of requests in flight. The raw producer is the ceiling one Python process reaches on this
machine; intake's rate divided by it is the figure to watch (both use one process, so it is also per core).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

from bench.common import Result, start_process, wait_ready
from shared.domain.tracking_code import TrackingCodeGenerator
from shared.envelope import cloudevent_headers, event_key, event_value
from shared.events import Applicant, RequestSubmitted, utcnow
from shared.settings import KafkaSettings
from shared.topics import Topic
from tests.data import submission

PORT = 18181


async def raw_producer(count: int, concurrency: int, bootstrap: str) -> Result:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=1)
    await producer.start()
    # One generator per worker: the baseline must not be capped by a single replica's 256 codes a second.
    generators = [TrackingCodeGenerator(key=b"bench-raw-producer-key!!", replica_id=i) for i in range(concurrency)]
    body = submission()
    applicant = Applicant.model_validate(body["applicant"])
    latencies: list[float] = []
    remaining = iter(range(count))

    async def worker(generator: TrackingCodeGenerator) -> None:
        for _ in remaining:
            event = RequestSubmitted(
                tracking_code=generator.next_code(),
                service_id=body["service_id"],
                catalog_version=1,
                agency="civil-registry",
                applicant=applicant,
                fields=body["fields"],
                accept_by=utcnow() + timedelta(seconds=5),
            )
            started = time.perf_counter()
            headers = [(k, v.encode()) for k, v in cloudevent_headers(event, source="/bench").items()]
            await producer.send_and_wait(
                Topic.REQUESTS.value, event_value(event), key=event_key(event), headers=headers
            )
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(generators[i % len(generators)]) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    await producer.stop()
    return Result("raw aiokafka producer (acks=all)", count, elapsed, latencies)


async def intake_http(count: int, concurrency: int) -> Result:
    latencies: list[float] = []
    refused = 0
    remaining = iter(range(count))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{PORT}", limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal refused
            for _ in remaining:
                body = submission()
                started = time.perf_counter()
                response = await client.post("/api/v1/requests", json=body)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 202:
                    refused += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if refused:
        raise RuntimeError(f"{refused} submissions were not accepted during the benchmark")
    return Result("intake POST /api/v1/requests (HTTP)", count, elapsed, latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32, choices=range(1, 63))
    args = parser.parse_args()
    kafka = KafkaSettings()
    log = Path(tempfile.mkdtemp(prefix="bench-intake-")) / "intake.log"
    process = start_process(
        "services.intake",
        {
            "INTAKE_PORT": str(PORT),
            "INTAKE_REPLICA_ID": "62",
            "KHEDMAT_LOG_LEVEL": "WARNING",
            # The benchmark is one client address submitting for many people: lift the per-client limit.
            "INTAKE_RATE_LIMIT_PER_CLIENT": "100000000/minute",
            "INTAKE_RATE_LIMIT_PER_NATIONAL_ID": "100000000/hour",
        },
        log,
    )
    try:
        wait_ready(f"http://127.0.0.1:{PORT}/readyz")
        asyncio.run(intake_http(200, args.concurrency))  # warm-up: connections, JIT-free but caches and pools
        asyncio.run(raw_producer(200, args.concurrency, kafka.bootstrap_servers))
        raw = asyncio.run(raw_producer(args.count, args.concurrency, kafka.bootstrap_servers))
        served = asyncio.run(intake_http(args.count, args.concurrency))
    finally:
        process.terminate()
        process.wait(timeout=30)
    print(f"intake benchmark: {args.count} requests, {args.concurrency} in flight, one intake process")
    print("  " + raw.line())
    print("  " + served.line())
    print(f"  ratio intake/raw = {served.rate / raw.rate:.2f}  (aim: >= 0.33 per core)")


if __name__ == "__main__":
    main()

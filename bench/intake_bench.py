"""Intake at saturation over HTTP with real Kafka (acks=all), beside a raw aiokafka producer in the same run.

Both send the same RequestSubmitted events (CloudEvents headers, tracking-code keys) to `desk.requests` with
the same number of requests in flight. The raw producer is the ceiling one Python process reaches on this
machine; intake's rate divided by it is the figure to watch (both use one process, so it is also per core).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from aiokafka import AIOKafkaProducer

from bench.common import (
    BENCH_KAFKA,
    Result,
    bench_env,
    start_bench_servers,
    start_process,
    stop_bench_servers,
    wait_ready,
)
from shared.domain.tracking_code import TrackingCodeGenerator
from shared.envelope import cloudevent_headers, event_key, event_value
from shared.events import Applicant, RequestSubmitted, utcnow
from shared.settings import KafkaSettings
from shared.topics import Topic
from testkit.data import submission

PORT = 18181


async def raw_producer(count: int, concurrency: int, bootstrap: str) -> Result:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=1)
    await producer.start()
    # One generator per worker: the baseline must not be capped by a single replica's 256 codes a second.
    generators = [TrackingCodeGenerator(key=b"bench-raw-producer-key!!", replica_id=i) for i in range(14)]
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


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("%s", "r"); wrk.body = f:read("*a"); f:close()
"""


def ensure_wrk() -> str:
    """wrk (C, one thread drives thousands of requests a second), installed from Debian's packages if missing."""
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True)
    return shutil.which("wrk") or "wrk"


def _milliseconds(text: str) -> float:
    """wrk's '49.61ms', '812.00us' or '1.02s' in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    value, unit = float(match.group(1)), match.group(2)
    return {"us": value / 1000, "ms": value, "s": value * 1000}[unit]


def intake_http(seconds: int, concurrency: int, workdir: Path) -> Result:
    """Saturate intake with wrk: one valid submission body, each POST a new request with its own code."""
    body = workdir / "body.json"
    body.write_text(json.dumps(submission()))
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT % body)
    out = subprocess.run(
        [
            ensure_wrk(),
            "-t1",
            f"-c{concurrency}",
            f"-d{seconds}s",
            "-s",
            str(script),
            "--latency",
            f"http://127.0.0.1:{PORT}/api/v1/requests",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"some submissions were not accepted during the benchmark:\n{out}")
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    elapsed = float(re.search(r"requests in ([\d.]+)s", out).group(1))  # type: ignore[union-attr]
    p50 = _milliseconds(re.search(r"50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _milliseconds(re.search(r"99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    # wrk reports percentiles, not samples: keep them as a two-point distribution for the common printer.
    latencies = [p50 / 1000] * 98 + [p99 / 1000] * 2
    return Result("intake POST /api/v1/requests (HTTP, wrk)", count, elapsed, latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=20000, help="events the raw producer sends")
    parser.add_argument("--seconds", type=int, default=15, help="how long wrk saturates intake")
    parser.add_argument("--concurrency", type=int, default=32, choices=range(1, 257))
    args = parser.parse_args()
    start_bench_servers()
    kafka = KafkaSettings(bootstrap_servers=BENCH_KAFKA)
    workdir = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    log = workdir / "intake.log"
    process = start_process(
        "services.intake",
        {
            **bench_env(),
            "INTAKE_PORT": str(PORT),
            "INTAKE_REPLICA_ID": "15",
            "KHEDMAT_LOG_LEVEL": "WARNING",
            # The benchmark is one client address submitting for many people: lift the per-client limit.
            "INTAKE_RATE_LIMIT_PER_CLIENT": "100000000/minute",
            "INTAKE_RATE_LIMIT_PER_NATIONAL_ID": "100000000/hour",
        },
        log,
    )
    try:
        wait_ready(f"http://127.0.0.1:{PORT}/readyz")
        intake_http(2, args.concurrency, workdir)  # warm-up: connections, pools, the broker's metadata
        asyncio.run(raw_producer(500, args.concurrency, kafka.bootstrap_servers))
        raw = asyncio.run(raw_producer(args.count, args.concurrency, kafka.bootstrap_servers))
        served = intake_http(args.seconds, args.concurrency, workdir)
    finally:
        process.terminate()
        process.wait(timeout=30)
        stop_bench_servers()
    print(f"intake benchmark: {args.concurrency} in flight, one intake process, acks=all on both sides")
    print("  " + raw.line())
    print("  " + served.line())
    print(f"  ratio intake/raw = {served.rate / raw.rate:.2f}  (aim: >= 0.33 per core)")


if __name__ == "__main__":
    main()

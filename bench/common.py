"""Helpers shared by the benchmarks: latency statistics and starting a service process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from testkit.databases import postgres_database

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Result:
    """Throughput and latency of one measured run."""

    name: str
    count: int
    seconds: float
    latencies_s: list[float]

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")

    def line(self) -> str:
        p50 = statistics.median(self.latencies_s) * 1000 if self.latencies_s else float("nan")
        return (
            f"{self.name:38} {self.count:6d} in {self.seconds:6.2f}s = {self.rate:8.1f}/s"
            f"   p50 {p50:7.1f} ms   p99 {self.percentile(0.99) * 1000:7.1f} ms"
        )


# The benchmarks' own Kafka, Redis and PostgreSQL (other ports and state than `make run`'s and the tests'), wiped
# per run, so tens of thousands of benchmark requests never land in a developer's desk.
BENCH_SERVER_ENV = {
    "KHEDMAT_LOCAL_STATE": str(REPO_ROOT / ".cache" / "bench-servers"),
    "KHEDMAT_KAFKA_PORT": "29092",
    "KHEDMAT_KAFKA_CONTROLLER_PORT": "29093",
    "KHEDMAT_REDIS_PORT": "26380",
    "KHEDMAT_POSTGRES_PORT": "25432",
}
BENCH_KAFKA = f"127.0.0.1:{BENCH_SERVER_ENV['KHEDMAT_KAFKA_PORT']}"
BENCH_REDIS = f"redis://127.0.0.1:{BENCH_SERVER_ENV['KHEDMAT_REDIS_PORT']}/0"
# SQLAlchemy async URL of the benchmark server's base database; a benchmark makes its own with bench_database().
BENCH_POSTGRES = f"postgresql+asyncpg://khedmat@127.0.0.1:{BENCH_SERVER_ENV['KHEDMAT_POSTGRES_PORT']}/khedmat"


def _local(script: str, *args: str) -> None:
    subprocess.run(
        ["bash", str(REPO_ROOT / "deploy" / "local" / script), *args],
        check=True,
        cwd=REPO_ROOT,
        env={**os.environ, **BENCH_SERVER_ENV},
    )


def start_bench_servers() -> None:
    """Fresh Kafka, Redis and PostgreSQL for one benchmark run."""
    _local("kafka.sh", "reset")
    _local("postgres.sh", "reset")
    _local("up.sh")


def stop_bench_servers() -> None:
    """Stop the benchmark's Kafka, Redis and PostgreSQL."""
    _local("down.sh")


def run_measure(
    name: str, measure: Callable[[int, Path], Coroutine[Any, Any, None]], count: str, default: int, help_text: str
) -> None:
    """`python -m bench.<name>_bench [--<count> N]`: on fresh servers, stopped afterwards, `measure(N, workdir)`."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}_bench")
    parser.add_argument(f"--{count}", type=int, default=default, help=help_text)
    args = parser.parse_args()
    start_bench_servers()
    try:
        asyncio.run(measure(getattr(args, count), Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))))
    finally:
        stop_bench_servers()


def bench_database(prefix: str = "khedmat_bench") -> contextlib.AbstractAsyncContextManager[str]:
    """`async with bench_database() as url:` a fresh, empty database on the benchmark's PostgreSQL (after
    start_bench_servers), dropped at the end; the URL suits shared.db.make_engine and *_DATABASE_URL settings."""
    return postgres_database(BENCH_POSTGRES, prefix)


def bench_env() -> dict[str, str]:
    """Environment that points a service process at the benchmark's servers."""
    return {"KHEDMAT_KAFKA_BOOTSTRAP_SERVERS": BENCH_KAFKA, "KHEDMAT_REDIS_URL": BENCH_REDIS}


def start_process(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `python -m module` with extra environment, output to `log`."""
    return subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def wait_ready(url: str, timeout_s: float = 60) -> None:
    """Poll a /readyz until it answers 200."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)

"""`python -m shared.urls [--wait]`: where a local run (`make run`) can be reached.

Without arguments it prints the addresses. With `--wait` (one more process of `make run`'s Procfile) it polls
every process's readiness probe and prints one line, `desk ready: <URLs>`, once all of them answer; or, past
the deadline, one line naming what never got ready. Then it idles until the supervisor stops it: a Procfile
process that exits would make honcho stop the whole desk.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

LOCAL_URLS = {
    "intake (catalog, submissions)": "http://127.0.0.1:8081/docs",
    "tracking (status lookup)": "http://127.0.0.1:8082/docs",
    "inquiry (health, metrics)": "http://127.0.0.1:8083/readyz",
    "notify (health, metrics)": "http://127.0.0.1:8084/readyz",
    "identity (sign-in, sessions)": "http://127.0.0.1:8085/docs",
    "sandbox agencies": "http://127.0.0.1:8090/control/faults",
    "sandbox SMS gateway": "http://127.0.0.1:8091/messages",
    "sandbox SMTP sink": "http://127.0.0.1:8092/messages (SMTP on 127.0.0.1:2525)",
    "Jaeger (traces)": "http://127.0.0.1:16686",
    "Kafka": "127.0.0.1:9092",
    "Redis": "redis://127.0.0.1:6380/0",
    "PostgreSQL": "postgresql://khedmat@127.0.0.1:5433/khedmat",
}


@dataclass(frozen=True)
class Probe:
    """One readiness probe: an HTTP URL that must answer 200, or tcp://host:port that must accept."""

    name: str
    url: str


# What `make run` starts, in the order it comes up; Jaeger is not among them: it may still be building.
LOCAL_PROBES = (
    Probe("kafka", "tcp://127.0.0.1:9092"),
    Probe("redis", "tcp://127.0.0.1:6380"),
    Probe("postgresql", "tcp://127.0.0.1:5433"),
    Probe("sandbox agencies", "http://127.0.0.1:8090/healthz"),
    Probe("sandbox SMS gateway", "http://127.0.0.1:8091/healthz"),
    Probe("sandbox SMTP sink", "http://127.0.0.1:8092/healthz"),
    Probe("sandbox SMTP", "tcp://127.0.0.1:2525"),
    Probe("intake", "http://127.0.0.1:8081/readyz"),
    Probe("inquiry", "http://127.0.0.1:8083/readyz"),
    Probe("tracking", "http://127.0.0.1:8082/readyz"),
    Probe("notify", "http://127.0.0.1:8084/readyz"),
    Probe("identity", "http://127.0.0.1:8085/readyz"),
)

# The addresses a newcomer opens first, in the ready line.
READY_LINE_URLS = {
    "intake": "http://127.0.0.1:8081/docs",
    "tracking": "http://127.0.0.1:8082/docs",
    "identity": "http://127.0.0.1:8085/docs",
    "SMS gateway": "http://127.0.0.1:8091/messages",
    "mail": "http://127.0.0.1:8092/messages",
    "traces": "http://127.0.0.1:16686",
}


def answers(probe: Probe, timeout_s: float = 2.0) -> bool:
    """True when the probe's endpoint is ready right now."""
    parts = urlsplit(probe.url)
    if parts.scheme == "tcp":
        try:
            with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=timeout_s):
                return True
        except OSError:
            return False
    try:
        return httpx.get(probe.url, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until_ready(
    probes: Sequence[Probe],
    *,
    timeout_s: float,
    interval_s: float = 0.5,
    check: Callable[[Probe], bool] = answers,
) -> list[Probe]:
    """Poll until every probe answers or `timeout_s` passes; returns those that never did (empty: all ready)."""
    deadline = time.monotonic() + timeout_s
    pending = list(probes)
    while pending:
        pending = [probe for probe in pending if not check(probe)]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(interval_s)
    return pending


def ready_line(urls: dict[str, str] = READY_LINE_URLS) -> str:
    return "desk ready: " + ", ".join(f"{name} {url}" for name, url in urls.items())


def not_ready_line(pending: Sequence[Probe], timeout_s: float) -> str:
    names = "; ".join(f"{probe.name} ({probe.url})" for probe in pending)
    return f"desk NOT ready after {timeout_s:.0f}s: no answer from {names}; the lines above say why"


def _idle_until_stopped() -> None:
    def leave(_signum: int, _frame: object) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)
    while True:
        signal.pause()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.urls", description=__doc__.splitlines()[0])
    parser.add_argument("--wait", action="store_true", help="print `desk ready: …` once every process answers")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness (180)")
    parser.add_argument("--exit", action="store_true", help="exit after the line instead of idling")
    args = parser.parse_args(argv)
    if not args.wait:
        print("Khedmat is starting; `desk ready: …` follows once every process answers. Addresses:")
        for name, url in LOCAL_URLS.items():
            print(f"  {name:32} {url}")
        return 0
    started = time.monotonic()
    pending = wait_until_ready(LOCAL_PROBES, timeout_s=args.timeout)
    if pending:
        print(not_ready_line(pending, args.timeout), file=sys.stderr, flush=True)
    else:
        print(f"{ready_line()} ({time.monotonic() - started:.1f}s after this waiter started)", flush=True)
    if args.exit:
        return 1 if pending else 0
    _idle_until_stopped()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Runs the sandbox and the five services as separate processes against real Kafka and Redis, for e2e tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.notify.settings import DEV_INTERNAL_KEY
from shared.topics import Topic
from testkit.infra import REPO_ROOT, Servers
from testkit.kafka_tools import start_group_at_end

SERVICES = ("intake", "inquiry", "tracking", "notify", "identity")
# notify's internal routes (what was sent about a request) answer only to the desk's internal key.
NOTIFY_KEY = {"X-Internal-Key": DEV_INTERNAL_KEY}


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Process:
    """One running process of the stack, its port and its log file."""

    name: str
    module: str
    port: int
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Stack:
    """The whole desk as processes: sandbox, intake, inquiry, tracking, notify, identity."""

    servers: Servers
    workdir: Path
    group_prefix: str = "e2e"
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.agencies_port, self.sms_port, self.smtp_port, self.smtp_http_port = (free_port() for _ in range(4))
        ports = {name: free_port() for name in SERVICES}
        common = {**self._common_env(), "KHEDMAT_IDENTITY_JWKS_URL": self._jwks_url(ports)}
        for name, env in self._process_env(ports).items():
            port = self.agencies_port if name == "sandbox" else ports[name]
            if name != "sandbox":
                env[f"{name.upper()}_PORT"] = str(port)
            module = "sandbox" if name == "sandbox" else f"services.{name}"
            self.processes[name] = Process(
                name, module, port, {**common, **env, **self.extra_env}, self.workdir / f"{name}.log"
            )

    def _common_env(self) -> dict[str, str]:
        """The environment every process of the stack shares: this shell's, pointed at the test servers."""
        return {
            **os.environ,
            "KHEDMAT_KAFKA_BOOTSTRAP_SERVERS": self.servers.kafka_bootstrap,
            "KHEDMAT_REDIS_URL": self.servers.redis_url,
            "KHEDMAT_DEPLOYMENT_ENVIRONMENT": "test",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }

    @staticmethod
    def _jwks_url(ports: dict[str, int]) -> str:
        """Where every service of the stack fetches identity's public keys."""
        return f"http://127.0.0.1:{ports['identity']}/.well-known/jwks.json"

    def _process_env(self, ports: dict[str, int]) -> dict[str, dict[str, str]]:
        """Each process's own settings, by process name, wiring it to the others on their ports."""
        # intake checks agency commands on tracking's internal route: one key of the stack's own, not the dev default.
        internal_key = secrets.token_urlsafe(24)
        return {
            "sandbox": {
                "SANDBOX_AGENCIES_PORT": str(self.agencies_port),
                "SANDBOX_SMS_PORT": str(self.sms_port),
                "SANDBOX_SMTP_PORT": str(self.smtp_port),
                "SANDBOX_SMTP_HTTP_PORT": str(self.smtp_http_port),
                # The sandbox gateway reports each SMS delivered to notify, as a real provider's webhook would.
                "SANDBOX_SMS_RECEIPT_URL": (
                    f"http://127.0.0.1:{ports['notify']}/internal/v1/sms/receipts?token=dev-only-receipt-token"
                ),
            },
            # e2e tests are not about rate limits (tests/integration covers them): one client submits a lot here.
            "intake": {
                "INTAKE_RATE_LIMIT_PER_CLIENT": "100000/minute",
                "INTAKE_RATE_LIMIT_PER_NATIONAL_ID": "100000/hour",
                "INTAKE_BLOB_DIR": str(self.workdir / "blobs"),
                "INTAKE_TRACKING_URL": f"http://127.0.0.1:{ports['tracking']}",
                "INTAKE_TRACKING_KEY": internal_key,
            },
            "inquiry": {
                "INQUIRY_AGENCIES_BASE_URL": f"http://127.0.0.1:{self.agencies_port}",
                "INQUIRY_GROUP_ID": f"{self.group_prefix}-inquiry",
                "INQUIRY_DATABASE_URL": f"sqlite+aiosqlite:///{self.workdir / 'inquiry.db'}",
            },
            # Nor about lookup budgets (test_tracking_enumeration.py is): the tests poll one code for a while.
            "tracking": {
                "TRACKING_DATABASE_URL": f"sqlite+aiosqlite:///{self.workdir / 'tracking.db'}",
                "TRACKING_GROUP_ID": f"{self.group_prefix}-tracking",
                "TRACKING_LOOKUP_LIMIT_PER_CLIENT": "100000/minute",
                "TRACKING_LOOKUP_FAILURES_PER_CODE": "100000/minute",
                "TRACKING_LOOKUP_SUCCESSES_PER_CODE": "100000/minute",
                "TRACKING_INTERNAL_KEY": internal_key,
            },
            "notify": {
                "NOTIFY_DATABASE_URL": f"sqlite+aiosqlite:///{self.workdir / 'notify.db'}",
                "NOTIFY_GROUP_ID": f"{self.group_prefix}-notify",
                "NOTIFY_SMS_BASE_URL": f"http://127.0.0.1:{self.sms_port}",
                "NOTIFY_SMTP_PORT": str(self.smtp_port),
            },
            # Sign-in asks the sandbox's mobile registry and has notify text the code (notify's dev key on both
            # sides); budgets are tested in tests/integration, and e2e tests sign the same people in many times.
            "identity": {
                "IDENTITY_REGISTRY_URL": f"http://127.0.0.1:{self.agencies_port}",
                "IDENTITY_NOTIFY_URL": f"http://127.0.0.1:{ports['notify']}",
                "IDENTITY_SIGN_IN_LIMIT_PER_CLIENT": "100000/minute",
                "IDENTITY_SIGN_IN_LIMIT_PER_NATIONAL_ID": "100000/minute",
                "IDENTITY_VERIFY_LIMIT_PER_CLIENT": "100000/minute",
            },
        }

    def start_groups_at_end(self) -> None:
        """Commit this stack's (fresh) consumer groups at the topics' end, so they skip earlier tests' events
        instead of verifying, projecting and notifying all of them first."""
        prefix = self.group_prefix
        for group, topic in (
            (f"{prefix}-inquiry", Topic.REQUESTS),
            (f"{prefix}-tracking", Topic.REQUESTS),
            (f"{prefix}-notify-contacts", Topic.REQUESTS),
            (f"{prefix}-notify", Topic.STATUS),
            (f"{prefix}-tracking-notifications", Topic.NOTIFICATIONS),
        ):
            asyncio.run(start_group_at_end(self.servers.kafka_bootstrap, group, topic))
        # tracking's new projection would otherwise fold the topic from its first record regardless.
        self.processes["tracking"].env["TRACKING_NEW_PROJECTION_START"] = "group"

    @property
    def sms_url(self) -> str:
        return f"http://127.0.0.1:{self.sms_port}"

    @property
    def smtp_http_url(self) -> str:
        return f"http://127.0.0.1:{self.smtp_http_port}"

    def url(self, name: str) -> str:
        return self.processes[name].url

    def start(self, name: str) -> None:
        """Start one process (its output appended to its log file)."""
        process = self.processes[name]
        log = process.log_path.open("ab")
        process.popen = subprocess.Popen(
            [sys.executable, "-m", process.module],
            cwd=REPO_ROOT,
            env=process.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def start_all(self, timeout_s: float = 90) -> None:
        """Start every process and wait until each says it is ready."""
        for name in ("sandbox", *SERVICES):
            self.start(name)
        self.wait_ready(timeout_s=timeout_s)

    @contextlib.contextmanager
    def running(self) -> Iterator[Stack]:
        """The whole stack, started for the block (its consumer groups at the topics' end), then stopped."""
        try:
            self.start_groups_at_end()
            self.start_all()
            yield self
        finally:
            self.stop_all()

    def wait_ready(self, names: tuple[str, ...] = ("sandbox", *SERVICES), timeout_s: float = 90) -> None:
        """Poll /readyz (the sandbox's /healthz) until every named process answers 200."""
        deadline = time.monotonic() + timeout_s
        pending = list(names)
        while pending:
            name = pending[0]
            process = self.processes[name]
            if process.popen is not None and process.popen.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.popen.returncode}:\n{self.tail(name)}")
            path = "/healthz" if name == "sandbox" else "/readyz"
            try:
                if httpx.get(process.url + path, timeout=2).status_code == 200:
                    pending.pop(0)
                    continue
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready in {timeout_s}s:\n{self.tail(name)}")
            time.sleep(0.2)

    def signal(self, name: str, signum: int = signal.SIGKILL) -> None:
        """Send a signal to one process and wait for it to end."""
        popen = self.processes[name].popen
        if popen is not None and popen.poll() is None:
            popen.send_signal(signum)
            popen.wait(timeout=30)

    def stop_all(self) -> None:
        """SIGTERM everything (SIGKILL what lingers)."""
        for process in self.processes.values():
            if process.popen is not None and process.popen.poll() is None:
                process.popen.terminate()
        for process in self.processes.values():
            if process.popen is not None:
                try:
                    process.popen.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.popen.kill()
                    process.popen.wait(timeout=5)

    def tail(self, name: str, lines: int = 40) -> str:
        """The end of a process's log, for failure messages."""
        path = self.processes[name].log_path
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def logs(self) -> str:
        """Every process's whole log."""
        return "\n".join(p.log_path.read_text(errors="replace") for p in self.processes.values() if p.log_path.exists())

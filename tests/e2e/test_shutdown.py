"""A service stops on its own within the supervisor's grace period (honcho's 5 s under `make run`).

notify is the one with the most to finish: status changes in flight (here: each SMS retried while the gateway
is down, for a minute and more before it would be dead-lettered), its consumers to leave their groups, its
background loops. A stop abandons what runs past a short drain budget: uncommitted, it is redelivered.
"""

from __future__ import annotations

import re
import signal
import time

import httpx

from testkit.data import submission
from testkit.harness import Stack
from tests.e2e.test_notify_channels import submit
from tests.e2e.test_request_flow import wait_for

SUPERVISOR_GRACE_S = 5.0
# Well within the grace period: what the budgets add up to (HTTP 1 s, consumers' drain 1.5 s, telemetry 1 s),
# plus the interpreter's exit, with room for a slow machine.
STOPS_WITHIN_S = 4.0


def status_changes_in_flight(stack: Stack) -> float:
    metrics = httpx.get(stack.url("notify") + "/metrics", timeout=5).text
    found = re.search(r'^khedmat_consumer_in_flight\{[^}]*topic="desk\.status"[^}]*\} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


def test_notify_stops_within_the_grace_period_with_status_changes_in_flight(stack: Stack) -> None:
    faults = stack.sms_url + "/control/faults"
    assert httpx.put(faults, json={"down": True}).status_code == 200
    try:
        body = submission()
        body["applicant"]["notification_channels"] = ["sms"]
        submit(stack, body)
        wait_for(lambda: status_changes_in_flight(stack) >= 1, timeout_s=60)
        time.sleep(1)  # into the retries
        notify = stack.processes["notify"].popen
        assert notify is not None and notify.poll() is None
        started = time.monotonic()
        notify.send_signal(signal.SIGTERM)
        notify.wait(timeout=30)
        took = time.monotonic() - started
    finally:
        httpx.delete(faults)
    assert took < STOPS_WITHIN_S < SUPERVISOR_GRACE_S, f"notify took {took:.1f}s to stop:\n{stack.tail('notify')}"
    assert notify.returncode in (0, -signal.SIGTERM), stack.tail("notify")

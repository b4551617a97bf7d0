"""A rebuild beside the running desk: `python -m services.tracking rebuild` replays desk.requests from offset 0
and swaps its tables in while tracking keeps answering, and notify sends nothing for the replayed history."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from typing import Any

import httpx

from shared.topics import Topic
from testkit.data import submission
from testkit.harness import Stack
from testkit.infra import REPO_ROOT
from testkit.kafka_tools import end_offsets
from tests.e2e.test_request_flow import lookup, wait_for


def messages(stack: Stack) -> list[dict[str, Any]]:
    return list(httpx.get(stack.sms_url + "/messages").json())


def submit(stack: Stack) -> tuple[str, str]:
    body = submission()
    response = httpx.post(stack.url("intake") + "/api/v1/requests", json=body, timeout=15)
    assert response.status_code == 202, response.text
    return response.json()["tracking_code"], body["applicant"]["national_id"]


def settled(stack: Stack, seconds: float = 3.0) -> int:
    """The SMS count once it has not moved for `seconds`."""
    count, since = len(messages(stack)), time.monotonic()
    deadline = since + 60
    while time.monotonic() - since < seconds:
        assert time.monotonic() < deadline, "notify never went quiet"
        time.sleep(0.3)
        now = len(messages(stack))
        if now != count:
            count, since = now, time.monotonic()
    return count


def test_rebuild_swaps_in_while_lookups_go_on_and_no_citizen_is_texted_again(stack: Stack) -> None:
    requests = [submit(stack) for _ in range(3)]
    for code, nid in requests:
        wait_for(lambda c=code, n=nid: (found := lookup(stack, c, n)) and found["status"] == "APPROVED", timeout_s=30)
    sms_before = settled(stack)
    status_before = asyncio.run(end_offsets(stack.servers.kafka_bootstrap, Topic.STATUS))

    failures: list[str] = []
    answered = 0
    running = True

    def keep_looking_up() -> None:
        nonlocal answered
        while running:
            for code, nid in requests:
                found = lookup(stack, code, nid)
                if found is None or found["status"] != "APPROVED":
                    failures.append(f"{code}: {found}")
                answered += 1
            time.sleep(0.02)

    looking = threading.Thread(target=keep_looking_up)
    looking.start()
    try:
        rebuilt = subprocess.run(
            [sys.executable, "-m", "services.tracking", "rebuild"],
            cwd=REPO_ROOT,
            env=stack.processes["tracking"].env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        running = False
        looking.join()
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    report = json.loads(rebuilt.stdout.strip().splitlines()[-1])
    print(f"\nrebuild: {report['events']} events in {report['seconds']} s; {answered} lookups meanwhile")
    assert report["swapped"] is True and report["events"] > 0
    assert not failures, failures[:5]
    assert answered > 0

    # Nothing was sent for the replayed history, and desk.status got nothing new.
    assert settled(stack) == sms_before
    assert asyncio.run(end_offsets(stack.servers.kafka_bootstrap, Topic.STATUS)) == status_before

    # The desk goes on after the swap: a new request is projected and its citizen texted.
    code, nid = submit(stack)
    wait_for(lambda: (found := lookup(stack, code, nid)) and found["status"] == "APPROVED", timeout_s=30)
    wait_for(lambda: len(messages(stack)) >= sms_before + 3, timeout_s=30)

"""Enumeration acceptance: 1,000 lookups, of random codes from one client and of one real code with wrong
national IDs from many clients, get one uniform answer (404, byte for byte) until the budget is spent (the
client's, then the code's failures), and then 429 with Retry-After; the real request is never revealed, and once
the code's failures fill their window, an anonymous lookup of it with the right national ID reads the same 429.
The applicant's own successful lookups spent none of the failures' budget. tracking runs as its own process on
real Redis. (That the signed-in owner still gets the request is tests/integration/test_tracking_lockout.py.)"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from shared.domain.identity import make_valid_national_id
from shared.domain.tracking_code import TrackingCodeGenerator
from testkit.harness import Stack
from testkit.infra import Servers
from testkit.inquiry_stream import send_all, submissions

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(300)]

PER_CLIENT = 30
PER_CODE = 10
SUCCESSES = 100


def wrong_national_ids(right: str, count: int) -> list[str]:
    rng = random.Random(11)
    made: list[str] = []
    while len(made) < count:
        candidate = make_valid_national_id(f"{rng.randrange(10**9):09d}")
        if candidate != right:
            made.append(candidate)
    return made


async def test_a_thousand_guesses_get_uniform_answers_and_are_throttled(servers: Servers, tmp_path: Path) -> None:
    stack = Stack(servers, tmp_path, group_prefix=f"enum-{uuid.uuid4().hex[:8]}")
    stack.processes["tracking"].env.update(
        {
            "TRACKING_LOOKUP_LIMIT_PER_CLIENT": f"{PER_CLIENT}/minute",
            "TRACKING_LOOKUP_FAILURES_PER_CODE": f"{PER_CODE}/minute",
            "TRACKING_LOOKUP_SUCCESSES_PER_CODE": f"{SUCCESSES}/minute",
        }
    )
    await asyncio.to_thread(stack.start_groups_at_end)
    stack.start("tracking")
    try:
        await asyncio.to_thread(stack.wait_ready, ("tracking",))
        [real] = submissions(1)
        producer = AIOKafkaProducer(bootstrap_servers=servers.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await send_all(producer, [real])
        finally:
            await producer.stop()

        async with httpx.AsyncClient(base_url=stack.url("tracking"), timeout=10) as client:

            async def look(code: str, national_id: str, client_ip: str) -> httpx.Response:
                return await client.post(
                    "/api/v1/tracking/lookup",
                    json={"tracking_code": code, "national_id": national_id},
                    headers={"X-Forwarded-For": client_ip},  # uvicorn trusts it from 127.0.0.1 (its proxy)
                )

            # The applicant finds their request (from their own address): the projection has it.
            polls = 0
            async with asyncio.timeout(30):
                while True:
                    await asyncio.sleep(1.0)  # few polls: each one that finds nothing is a failure of the code
                    polls += 1
                    if (await look(real.tracking_code, real.applicant.national_id, "10.9.9.9")).status_code == 200:
                        break
            # More of the applicant's lookups that find their request: they spend none of the failures' budget.
            for index in range(PER_CODE):
                found = await look(real.tracking_code, real.applicant.national_id, f"10.9.8.{index}")
                assert found.status_code == 200, found.text

            # 500 random codes (well-formed ones from another key, and junk) from one client.
            guesser = TrackingCodeGenerator(key=uuid.uuid4().bytes * 2, replica_id=3)
            rng = random.Random(5)
            random_codes = [
                guesser.next_code() if index % 2 else f"{rng.randrange(10**15):015d}" for index in range(500)
            ]
            by_one_client = [await look(code, real.applicant.national_id, "10.1.1.1") for code in random_codes]
            # 500 wrong national IDs for the real code, each from another address.
            wrong_ids = wrong_national_ids(real.applicant.national_id, 500)
            on_one_code = [
                await look(real.tracking_code, national_id, f"10.2.{index // 250}.{index % 250}")
                for index, national_id in enumerate(wrong_ids)
            ]
            # Closed to anonymous lookups now, the right national ID included: the same refusal, no oracle.
            right = await look(real.tracking_code, real.applicant.national_id, "10.3.0.1")
    finally:
        await asyncio.to_thread(stack.stop_all)

    assert right.status_code == 429
    assert right.json()["type"] == on_one_code[-1].json()["type"]
    # The applicant's polls that found nothing while the projection caught up were failures of the code.
    for answers, budget, scope in (
        (by_one_client, PER_CLIENT, "client"),
        (on_one_code, PER_CODE - (polls - 1), "code"),
    ):
        statuses = Counter(answer.status_code for answer in answers)
        assert set(statuses) == {404, 429}, statuses
        assert statuses[404] == budget, f"{scope}: {statuses}"
        not_found = [answer for answer in answers if answer.status_code == 404]
        # Uniform: one body, one media type, whether the code exists or not.
        assert {answer.content for answer in not_found} == {not_found[0].content}
        assert {answer.headers["content-type"] for answer in not_found} == {"application/problem+json"}
        throttled = [answer for answer in answers if answer.status_code == 429]
        assert all(1 <= int(answer.headers["Retry-After"]) <= 60 for answer in throttled)
        assert {answer.json()["type"] for answer in throttled} == {throttled[0].json()["type"]}
        # Once throttled, never answered again within the window.
        first_throttled = next(index for index, answer in enumerate(answers) if answer.status_code == 429)
        assert all(answer.status_code == 429 for answer in answers[first_throttled:])
    # A wrong national ID for the real code reads exactly like a code that does not exist.
    assert on_one_code[0].content == by_one_client[0].content
    print(
        f"\nrandom codes: {Counter(a.status_code for a in by_one_client)}; "
        f"one code, wrong IDs: {Counter(a.status_code for a in on_one_code)}"
    )

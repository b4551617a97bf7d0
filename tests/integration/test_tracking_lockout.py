"""Issue 16's lock-out, refused on the real servers: a stranger's wrong guesses at a tracking code never lock its
owner out. tracking, identity, notify and the sandbox run as processes on real Kafka and Redis; the owner signs
in as a phone would (a code texted to the mobile the registry lists) and every client address is a forwarded one
(uvicorn trusts X-Forwarded-For from 127.0.0.1, as from an ingress).

- 1,000 wrong guesses from one client spend that client's budget, not the code: the owner, from their own
  address, still looks it up, anonymously or signed in.
- 1,000 wrong guesses from 1,000 addresses fill the code's failure window: anonymous lookups of it answer 429
  for everyone (guessing stays bounded), but the signed-in owner still gets their request.

The budgets are the settings' shape at a test's scale: a client's budget below the code's failure budget, so one
client alone cannot close a code (docs/ARCHITECTURE.md, "Budgets"). About 2,000 lookups, one after another.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from sandbox.agencies import registered_mobile
from shared.domain.identity import make_valid_national_id
from shared.events import RequestSubmitted
from testkit.harness import Stack
from testkit.identity import bearer, sign_in
from testkit.infra import Servers
from testkit.inquiry_stream import send_all, submissions

pytestmark = pytest.mark.timeout(300)

PER_CLIENT = 20
FAILURES_PER_CODE = 50
GUESSES = 1_000
LOOKUP = "/api/v1/tracking/lookup"


def wrong_national_ids(right: str, count: int) -> list[str]:
    rng = random.Random(16)
    made: list[str] = []
    while len(made) < count:
        candidate = make_valid_national_id(f"{rng.randrange(10**9):09d}")
        if candidate != right:
            made.append(candidate)
    return made


@pytest.fixture(scope="module")
def stack(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The processes sign-in and lookups need, tracking with the test's budgets."""
    running = Stack(servers, Path(tmp_path_factory.mktemp("lockout")), group_prefix=f"lockout-{uuid.uuid4().hex[:8]}")
    running.processes["tracking"].env.update(
        {
            "TRACKING_LOOKUP_LIMIT_PER_CLIENT": f"{PER_CLIENT}/minute",
            "TRACKING_LOOKUP_FAILURES_PER_CODE": f"{FAILURES_PER_CODE}/minute",
            "TRACKING_LOOKUP_SUCCESSES_PER_CODE": "100/minute",
        }
    )
    names = ("sandbox", "notify", "identity", "tracking")
    try:
        running.start_groups_at_end()
        for name in names:
            running.start(name)
        running.wait_ready(names)
        yield running
    finally:
        running.stop_all()


@pytest.fixture(scope="module")
def requests(stack: Stack) -> list[RequestSubmitted]:
    """Two requests of one applicant, in tracking's projection (seen through their history: no lookup spent)."""
    first, second = submissions(2)
    second = second.model_copy(update={"applicant": first.applicant})

    async def publish() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.servers.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await send_all(producer, [first, second])
        finally:
            await producer.stop()

    asyncio.run(publish())
    return [first, second]


@pytest.fixture(scope="module")
def owner(stack: Stack, requests: list[RequestSubmitted]) -> dict[str, str]:
    """The applicant's session, once the projection holds both requests."""
    national_id = requests[0].applicant.national_id
    headers = bearer(sign_in(stack, national_id, registered_mobile(national_id)))
    history = stack.url("tracking") + "/api/v1/tracking/history"
    for _ in range(150):
        listed = httpx.get(history, headers=headers, timeout=10).json()["requests"]
        if {request["tracking_code"] for request in listed} >= {request.tracking_code for request in requests}:
            return headers
        time.sleep(0.2)
    raise AssertionError("tracking did not project the requests in 30 s")


def look(
    client: httpx.Client, code: str, national_id: str, address: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return client.post(
        LOOKUP,
        json={"tracking_code": code, "national_id": national_id},
        headers={"X-Forwarded-For": address, **(headers or {})},
    )


def assert_bounded(answers: list[httpx.Response], budget: int) -> None:
    """`budget` uniform 404s, then only 429s with a Retry-After within the minute."""
    assert Counter(answer.status_code for answer in answers) == {404: budget, 429: len(answers) - budget}
    assert all(answer.status_code == 404 for answer in answers[:budget])
    assert len({answer.content for answer in answers[:budget]}) == 1
    assert all(1 <= int(answer.headers["Retry-After"]) <= 60 for answer in answers[budget:])


def test_a_thousand_wrong_guesses_from_one_client_leave_the_owner_able_to_look_it_up(
    stack: Stack, requests: list[RequestSubmitted], owner: dict[str, str]
) -> None:
    request = requests[0]
    code, national_id = request.tracking_code, request.applicant.national_id
    with httpx.Client(base_url=stack.url("tracking"), timeout=10) as client:
        guesses = [look(client, code, wrong, "10.16.1.1") for wrong in wrong_national_ids(national_id, GUESSES)]
        assert_bounded(guesses, PER_CLIENT)
        # The guesser is out of budget, even with the right national ID; the code is not.
        assert look(client, code, national_id, "10.16.1.1").status_code == 429
        anonymous = look(client, code, national_id, "10.16.9.1")
        assert anonymous.status_code == 200, anonymous.text
        assert anonymous.json()["tracking_code"] == code
        signed_in = look(client, code, national_id, "10.16.9.2", owner)
        assert signed_in.status_code == 200 and signed_in.json()["tracking_code"] == code


def test_a_thousand_wrong_guesses_from_many_clients_close_the_code_to_all_but_its_signed_in_owner(
    stack: Stack, requests: list[RequestSubmitted], owner: dict[str, str]
) -> None:
    request = requests[1]
    code, national_id = request.tracking_code, request.applicant.national_id
    someone = make_valid_national_id("001600016")
    stranger = bearer(sign_in(stack, someone, registered_mobile(someone)))
    with httpx.Client(base_url=stack.url("tracking"), timeout=10) as client:
        guesses = [
            look(client, code, wrong, f"10.17.{index // 250}.{index % 250}")
            for index, wrong in enumerate(wrong_national_ids(national_id, GUESSES))
        ]
        assert_bounded(guesses, FAILURES_PER_CODE)
        # Closed to anonymous lookups, whatever national ID is sent: no oracle of the right one.
        closed = [look(client, code, national_id, "10.17.9.1"), look(client, code, someone, "10.17.9.2")]
        assert [answer.status_code for answer in closed] == [429, 429]
        assert closed[0].json()["type"] == closed[1].json()["type"]
        # Another citizen's session naming the owner's national ID is an anonymous lookup.
        assert look(client, code, national_id, "10.17.9.3", stranger).status_code == 429
        for attempt in range(5):
            signed_in = look(client, code, national_id, f"10.17.9.{4 + attempt}", owner)
            assert signed_in.status_code == 200, signed_in.text
            assert signed_in.json()["tracking_code"] == code

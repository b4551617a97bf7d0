"""inquiry's agency clients over a mock transport, and the dispatch of every catalog inquiry to its check."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx
import pytest

from services.inquiry.adapters import (
    MAX_ANSWER_BYTES,
    MAX_RETRY_AFTER_S,
    AgencyRefused,
    AgencyUnavailable,
    Attempt,
    HttpAgency,
    HttpCivilRegistry,
    HttpJudiciary,
    HttpMobileRegistry,
    HttpPostalRegistry,
    HttpPropertyRegistry,
    HttpTaxAdministration,
    IdentityAnswer,
    PostalAddress,
    count_attempts,
)
from services.inquiry.service import CHECKS, Agencies, run_inquiry, verify_submission
from shared.catalog import Catalog, Inquiry
from shared.events import InquiryOutcome, NextStep, RequestSubmitted
from tests.unit import inquiry_wiring as wiring
from tests.unit.inquiry_wiring import BIRTH_DATE, CATALOG, MOBILE, NATIONAL_ID, SERVICE_ID
from tests.unit.mock_agencies import Handler, Script, drop, raw, timeout

POSTAL_CODE = "1234567890"
PROPERTY_ID = "152-7-ب"

ADDRESS: PostalAddress = {
    "postal_code": POSTAL_CODE,
    "province": "تهران",
    "city": "تهران",
    "street": "خیابان آزادی",
    "alley": "کوچه بهار",
    "plaque": 12,
    "unit": 3,
    "full_address": "تهران، تهران، خیابان آزادی، کوچه بهار، پلاک 12، واحد 3",
}


def answer(status: int = 200, payload: Any = None, headers: dict[str, str] | None = None) -> Handler:
    return lambda _request: httpx.Response(status, json=payload, headers=headers)


@dataclass(frozen=True)
class Kind:
    """One agency client: how to call it, what a good answer is, and what it should turn into."""

    name: str
    cls: type[HttpAgency]
    call: Callable[[Any], Awaitable[Any]]
    good: dict[str, Any]
    expected: Any
    method: str
    path: str
    body: dict[str, str] | None
    # Values a strict client must refuse, per answer key.
    wrong_types: dict[str, list[Any]]


KINDS = [
    Kind(
        "civil-registry",
        HttpCivilRegistry,
        lambda c: c.check_identity(national_id=NATIONAL_ID, birth_date=BIRTH_DATE),
        {"match": True, "alive": True},
        IdentityAnswer(match=True, alive=True),
        "POST",
        "/civil-registry/v1/identity",
        {"national_id": NATIONAL_ID, "birth_date": "1990-01-31"},
        {"match": ["true", 1, None], "alive": ["false", 0]},
    ),
    Kind(
        "mobile-registry",
        HttpMobileRegistry,
        lambda c: c.check_ownership(NATIONAL_ID, MOBILE),
        {"owned": True},
        True,
        "POST",
        "/mobile-registry/v1/ownership",
        {"national_id": NATIONAL_ID, "mobile": MOBILE},
        {"owned": ["yes", 1, None, [True]]},
    ),
    Kind(
        "postal",
        HttpPostalRegistry,
        lambda c: c.address(POSTAL_CODE),
        dict(ADDRESS),
        ADDRESS,
        "POST",
        "/postal/v1/address",
        {"postal_code": POSTAL_CODE},
        {"plaque": ["12", True, 1.5], "city": [1, None], "postal_code": ["0987654321"]},
    ),
    Kind(
        "tax",
        HttpTaxAdministration,
        lambda c: c.clearance(NATIONAL_ID),
        {"cleared": False, "debt_rials": 2_500_000},
        (False, 2_500_000),
        "POST",
        "/tax/v1/clearance",
        {"national_id": NATIONAL_ID},
        {"cleared": ["false", 0], "debt_rials": ["2500000", True, 2.5, -1]},
    ),
    Kind(
        "judiciary",
        HttpJudiciary,
        lambda c: c.criminal_record(NATIONAL_ID),
        {"clean": True},
        True,
        "POST",
        "/judiciary/v1/criminal-record",
        {"national_id": NATIONAL_ID},
        {"clean": ["true", 1]},
    ),
    Kind(
        "property-registry",
        HttpPropertyRegistry,
        lambda c: c.ownership(NATIONAL_ID, PROPERTY_ID),
        {"owner": False},
        False,
        "POST",
        "/property-registry/v1/ownership",
        {"national_id": NATIONAL_ID, "property_id": PROPERTY_ID},
        {"owner": ["false", 0, None]},
    ),
]
KIND_IDS = [kind.name for kind in KINDS]


@dataclass
class Made:
    """A client under test with its scripted agency and the waits it asked for."""

    client: Any
    script: Script
    waits: list[float]


Make = Callable[..., Made]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    clients: list[httpx.AsyncClient] = []

    def build(kind: Kind, *responses: Handler, max_attempts: int = 3, guard: Any = None) -> Made:
        script = Script(list(responses))
        client = httpx.AsyncClient(transport=httpx.MockTransport(script), base_url="http://agencies")
        clients.append(client)
        waits: list[float] = []

        async def record(seconds: float) -> None:
            waits.append(seconds)

        return Made(kind.cls(client, max_attempts=max_attempts, guard=guard, sleep=record), script, waits)

    yield build
    for client in clients:
        await client.aclose()


# --- the clients over HTTP ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_good_answer_is_read_from_the_right_endpoint(make: Make, kind: Kind) -> None:
    made = make(kind, answer(payload=kind.good))
    with count_attempts() as tally:
        assert await kind.call(made.client) == kind.expected
    [request] = made.script.requests
    assert (request.method, request.url.path) == (kind.method, kind.path)
    if kind.body is not None:
        assert json.loads(request.content) == kind.body
    assert tally.attempts == 1
    assert made.waits == []


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_server_errors_and_drops_are_retried_and_counted(make: Make, kind: Kind) -> None:
    made = make(kind, answer(503), drop, timeout, answer(payload=kind.good), max_attempts=4)
    with count_attempts() as tally:
        assert await kind.call(made.client) == kind.expected
    assert len(made.script.requests) == 4
    assert tally.attempts == 4
    assert len(made.waits) == 3


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_persistent_server_error_is_unavailable_after_the_budget(make: Make, kind: Kind) -> None:
    made = make(kind, answer(500, {"error": "down"}), max_attempts=3)
    with count_attempts() as tally, pytest.raises(AgencyUnavailable):
        await kind.call(made.client)
    assert len(made.script.requests) == 3
    assert tally.attempts == 3


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_retry_after_is_the_minimum_wait(make: Make, kind: Kind) -> None:
    made = make(
        kind,
        answer(429, {"error": "slow down"}, {"Retry-After": "7"}),
        answer(429, {"error": "slow down"}, {"Retry-After": "3600"}),
        answer(payload=kind.good),
    )
    assert await kind.call(made.client) == kind.expected
    assert len(made.script.requests) == 3
    first, second = made.waits
    assert first >= 7
    # An agency asking for an hour gets at most the cap: the retry budget stays short.
    assert MAX_RETRY_AFTER_S <= second <= MAX_RETRY_AFTER_S + 2.0


async def test_retry_after_that_is_not_seconds_falls_back_to_backoff(make: Make) -> None:
    kind = KINDS[0]
    made = make(kind, answer(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), answer(payload=kind.good))
    assert await kind.call(made.client) == kind.expected
    [wait] = made.waits
    assert 0 <= wait <= 2.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_client_errors_are_refused_without_retry(make: Make, kind: Kind, status: int) -> None:
    made = make(kind, answer(status, {"error": "bad request"}), answer(payload=kind.good))
    with pytest.raises(AgencyRefused):
        await kind.call(made.client)
    assert len(made.script.requests) == 1


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_redirects_are_refused_not_followed(make: Make, kind: Kind, status: int) -> None:
    def redirect(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"location": "http://elsewhere/answer"})

    made = make(kind, redirect, answer(payload=kind.good))
    with pytest.raises(AgencyRefused):
        await kind.call(made.client)
    assert len(made.script.requests) == 1


@pytest.mark.parametrize(
    "content",
    [b"<html>gateway</html>", b"", b"[1, 2, 3]", b'"ok"', b"{}", b'{"pad": "' + b"x" * MAX_ANSWER_BYTES + b'"}'],
    ids=["html", "empty", "list", "string", "missing-keys", "oversized"],
)
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_unusable_answers_are_refused_without_retry(make: Make, kind: Kind, content: bytes) -> None:
    made = make(kind, raw(200, content), answer(payload=kind.good))
    with pytest.raises(AgencyRefused):
        await kind.call(made.client)
    assert len(made.script.requests) == 1


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_wrong_types_are_refused_never_coerced(make: Make, kind: Kind) -> None:
    for key, values in kind.wrong_types.items():
        for value in values:
            made = make(kind, answer(payload={**kind.good, key: value}))
            with pytest.raises(AgencyRefused):
                await kind.call(made.client)


async def test_oversized_answer_is_refused_even_on_an_error_status(make: Make) -> None:
    made = make(KINDS[2], raw(404, b'{"error": "postal_code_not_found", "pad": "' + b"x" * MAX_ANSWER_BYTES + b'"}'))
    with pytest.raises(AgencyRefused):
        await KINDS[2].call(made.client)


async def test_unknown_postal_code_is_an_answer_not_a_refusal(make: Make) -> None:
    made = make(KINDS[2], answer(404, {"error": "postal_code_not_found"}))
    assert await made.client.address(POSTAL_CODE) is None
    assert len(made.script.requests) == 1


async def test_bare_404_from_the_postal_route_is_refused(make: Make) -> None:
    made = make(KINDS[2], answer(404, {"detail": "Not Found"}))
    with pytest.raises(AgencyRefused):
        await made.client.address(POSTAL_CODE)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_guard_wraps_every_attempt(make: Make, kind: Kind) -> None:
    seen: list[tuple[str, int]] = []

    async def guard(agency: str, attempt: Attempt) -> httpx.Response:
        response = await attempt()
        seen.append((agency, response.status_code))
        return response

    made = make(kind, answer(503), answer(payload=kind.good), guard=guard)
    assert await kind.call(made.client) == kind.expected
    assert seen == [(kind.name, 503), (kind.name, 200)]


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_guard_saying_do_not_call_stops_the_call(make: Make, kind: Kind) -> None:
    async def circuit_open(_agency: str, _attempt: Attempt) -> httpx.Response:
        raise AgencyUnavailable("circuit open")

    made = make(kind, answer(payload=kind.good), guard=circuit_open)
    with count_attempts() as tally, pytest.raises(AgencyUnavailable, match="circuit open"):
        await kind.call(made.client)
    assert made.script.requests == []
    assert tally.attempts == 1
    assert made.waits == []


async def test_guard_that_translates_a_transport_error_still_lets_it_be_retried(make: Make) -> None:
    kind = KINDS[0]

    async def translating(_agency: str, attempt: Attempt) -> httpx.Response:
        try:
            return await attempt()
        except httpx.TransportError as error:
            raise AgencyUnavailable("failed") from error

    made = make(kind, drop, answer(payload=kind.good), guard=translating)
    assert await kind.call(made.client) == kind.expected
    assert len(made.script.requests) == 2


# --- dispatch -------------------------------------------------------------------------------------


def catalog_inquiries() -> list[tuple[str, int, Inquiry]]:
    return [
        (service.id, version, inquiry)
        for service in CATALOG.all()
        for version in CATALOG.versions(service.id)
        for inquiry in (CATALOG.get_version(service.id, version) or service).inquiries
    ]


def test_every_inquiry_in_the_catalog_has_a_check() -> None:
    missing = {
        f"{service_id} v{version}: {inquiry.agency}/{inquiry.check}"
        for service_id, version, inquiry in catalog_inquiries()
        if (inquiry.agency, inquiry.check) not in CHECKS
    }
    assert not missing, f"catalog inquiries without a registered check: {sorted(missing)}"
    assert len(catalog_inquiries()) >= len(CATALOG.all())


@dataclass
class Fakes:
    """In-memory agencies answering as told, each counting its calls."""

    identity: IdentityAnswer = field(default_factory=lambda: IdentityAnswer(match=True, alive=True))
    owned: bool = True
    address: PostalAddress | None = field(default_factory=lambda: ADDRESS)
    clearance: tuple[bool, int] = (True, 0)
    clean: bool = True
    owner: bool = True
    error: Exception | None = None
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def _called(self, *call: Any) -> None:
        self.calls.append(call)
        if self.error is not None:
            raise self.error

    async def check_identity(self, *, national_id: str, birth_date: date) -> IdentityAnswer:
        self._called("identity", national_id, birth_date)
        return self.identity

    async def check_ownership(self, national_id: str, mobile: str) -> bool:
        self._called("mobile", national_id, mobile)
        return self.owned

    async def address_of(self, postal_code: str) -> PostalAddress | None:
        self._called("postal", postal_code)
        return self.address

    async def tax_clearance(self, national_id: str) -> tuple[bool, int]:
        self._called("tax", national_id)
        return self.clearance

    async def criminal_record(self, national_id: str) -> bool:
        self._called("judiciary", national_id)
        return self.clean

    async def ownership(self, national_id: str, property_id: str) -> bool:
        self._called("property", national_id, property_id)
        return self.owner


@dataclass
class PostalFake:
    fakes: Fakes

    async def address(self, postal_code: str) -> PostalAddress | None:
        return await self.fakes.address_of(postal_code)


@dataclass
class TaxFake:
    fakes: Fakes

    async def clearance(self, national_id: str) -> tuple[bool, int]:
        return await self.fakes.tax_clearance(national_id)


def agencies(fakes: Fakes) -> Agencies:
    return Agencies(
        civil_registry=fakes,
        mobile_registry=fakes,
        postal=PostalFake(fakes),
        tax=TaxFake(fakes),
        judiciary=fakes,
        property_registry=fakes,
    )


def submitted(service_id: str = SERVICE_ID, **fields: str) -> RequestSubmitted:
    """A submission carrying the postal code and property id the inquiries read, unless `fields` replace them."""
    return wiring.submitted(service_id, fields={"postal_code": POSTAL_CODE, "property_id": PROPERTY_ID, **fields})


PAIRS = sorted(CHECKS)


@pytest.mark.parametrize("pair", PAIRS, ids=["/".join(pair) for pair in PAIRS])
async def test_every_check_passes_on_a_good_answer(pair: tuple[str, str]) -> None:
    inquiry = Inquiry(id="x", agency=pair[0], check=pair[1])
    fakes = Fakes()
    outcome = await run_inquiry(inquiry, submitted(), agencies(fakes))
    assert (outcome.inquiry, outcome.agency, outcome.outcome) == ("x", pair[0], InquiryOutcome.PASSED)
    assert outcome.attempts == 1
    assert len(fakes.calls) == 1


FAILING: dict[tuple[str, str], tuple[Fakes, str]] = {
    ("civil-registry", "identity"): (Fakes(identity=IdentityAnswer(match=False, alive=True)), "birth date"),
    ("mobile-registry", "ownership"): (Fakes(owned=False), "use a line in your own name"),
    ("postal", "address"): (Fakes(address=None), POSTAL_CODE),
    ("tax", "clearance"): (Fakes(clearance=(False, 2_500_000)), "Tax debt of 2,500,000 rials: settle it"),
    ("judiciary", "criminal-record"): (Fakes(clean=False), "criminal record"),
    ("property-registry", "ownership"): (Fakes(owner=False), f"not list you as an owner of property {PROPERTY_ID}"),
}


def test_every_check_has_a_failing_case() -> None:
    assert set(FAILING) == set(CHECKS)


@pytest.mark.parametrize("pair", PAIRS, ids=["/".join(pair) for pair in PAIRS])
async def test_every_check_fails_with_a_reason_the_citizen_can_act_on(pair: tuple[str, str]) -> None:
    fakes, phrase = FAILING[pair]
    outcome = await run_inquiry(Inquiry(id="x", agency=pair[0], check=pair[1]), submitted(), agencies(fakes))
    assert outcome.outcome is InquiryOutcome.FAILED
    assert outcome.reason_en and phrase in outcome.reason_en
    assert outcome.reason_fa


async def test_tax_debt_is_shown_in_persian_digits() -> None:
    outcome = await run_inquiry(
        Inquiry(id="t", agency="tax", check="clearance"), submitted(), agencies(Fakes(clearance=(False, 2_500_000)))
    )
    assert outcome.reason_fa and "۲٬۵۰۰٬۰۰۰" in outcome.reason_fa


async def test_not_cleared_without_a_debt_still_fails() -> None:
    outcome = await run_inquiry(
        Inquiry(id="t", agency="tax", check="clearance"), submitted(), agencies(Fakes(clearance=(False, 0)))
    )
    assert outcome.outcome is InquiryOutcome.FAILED
    assert outcome.reason_en and "did not clear you" in outcome.reason_en


@pytest.mark.parametrize(
    ("pair", "name", "bad"),
    [
        (("postal", "address"), "postal_code", ""),
        (("postal", "address"), "postal_code", "12345"),
        (("property-registry", "ownership"), "property_id", ""),
        (("property-registry", "ownership"), "property_id", "x" * 65),
    ],
)
async def test_missing_input_field_fails_naming_the_field(pair: tuple[str, str], name: str, bad: str) -> None:
    fakes = Fakes()
    outcome = await run_inquiry(
        Inquiry(id="x", agency=pair[0], check=pair[1]), submitted(**{name: bad}), agencies(fakes)
    )
    assert outcome.outcome is InquiryOutcome.FAILED
    assert outcome.reason_en and name in outcome.reason_en
    assert outcome.reason_fa and name in outcome.reason_fa
    assert fakes.calls == []


async def test_persian_digits_in_a_postal_code_are_accepted() -> None:
    fakes = Fakes()
    outcome = await run_inquiry(
        Inquiry(id="a", agency="postal", check="address"), submitted(postal_code="۱۲۳۴۵۶۷۸۹۰"), agencies(fakes)
    )
    assert outcome.outcome is InquiryOutcome.PASSED
    assert fakes.calls == [("postal", POSTAL_CODE)]


@pytest.mark.parametrize("pair", [p for p in PAIRS if p[0] != "civil-registry"], ids=lambda p: "/".join(p))
async def test_agency_not_configured_is_unavailable(pair: tuple[str, str]) -> None:
    fakes = Fakes()
    outcome = await run_inquiry(
        Inquiry(id="x", agency=pair[0], check=pair[1]), submitted(), Agencies(civil_registry=fakes)
    )
    assert outcome.outcome is InquiryOutcome.UNAVAILABLE
    assert outcome.reason_en and "not configured" in outcome.reason_en
    assert fakes.calls == []


@pytest.mark.parametrize("error", [AgencyUnavailable("HTTP 503"), AgencyRefused("HTTP 400")])
@pytest.mark.parametrize("pair", PAIRS, ids=["/".join(pair) for pair in PAIRS])
async def test_agency_that_cannot_answer_is_unavailable(pair: tuple[str, str], error: Exception) -> None:
    outcome = await run_inquiry(
        Inquiry(id="x", agency=pair[0], check=pair[1]), submitted(), agencies(Fakes(error=error))
    )
    assert outcome.outcome is InquiryOutcome.UNAVAILABLE
    assert outcome.reason_en and outcome.reason_fa


async def test_attempts_of_each_inquiry_are_the_real_count(make: Make) -> None:
    slow = make(KINDS[1], answer(503), answer(503), answer(payload={"owned": True}))
    quick = make(KINDS[0], answer(payload={"match": True, "alive": True}))
    completed, verification = await verify_submission(
        catalog=CATALOG,
        event=submitted("passport-renewal-appointment"),
        agencies=Agencies(civil_registry=quick.client, mobile_registry=slow.client),
    )
    assert {event.inquiry: event.attempts for event in completed} == {"identity": 1, "mobile-ownership": 3}
    assert verification.next_step is NextStep.AGENCY_REVIEW  # the passport service is decided by an officer


async def test_inquiries_of_one_request_run_concurrently() -> None:
    both_called = asyncio.Barrier(2)

    @dataclass
    class Waiting(Fakes):
        async def check_identity(self, *, national_id: str, birth_date: date) -> IdentityAnswer:
            await both_called.wait()  # only returns once the other inquiry is in flight too
            return IdentityAnswer(match=True, alive=True)

        async def tax_clearance(self, national_id: str) -> tuple[bool, int]:
            await both_called.wait()
            return True, 0

    fakes = Waiting()
    async with asyncio.timeout(2):
        _, verification = await verify_submission(
            catalog=CATALOG, event=submitted("tax-clearance-certificate"), agencies=agencies(fakes)
        )
    assert verification.next_step is NextStep.APPROVE


async def test_every_seeded_service_is_approved_or_reviewed_when_every_agency_agrees() -> None:
    for service in CATALOG.all():
        _, verification = await verify_submission(
            catalog=Catalog([service]), event=submitted(service.id), agencies=agencies(Fakes())
        )
        assert verification.next_step in (NextStep.APPROVE, NextStep.AGENCY_REVIEW), service.id
        assert all(outcome is InquiryOutcome.PASSED for outcome in verification.inquiries.values()), service.id

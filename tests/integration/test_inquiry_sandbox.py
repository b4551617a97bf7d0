"""inquiry against the real sandbox agencies over real HTTP: every seeded service, passing and failing, and faults."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from sandbox.agencies import (
    criminal_record_clean,
    is_alive,
    mobile_owned,
    postal_address,
    property_owner,
    registered_birth_date,
    registered_mobile,
    tax_clearance,
)
from sandbox.runner import SandboxEndpoints, serve_sandbox
from sandbox.settings import SandboxSettings
from services.inquiry.service import Agencies, http_agencies, verify_submission
from shared.catalog import DecisionMode, ServiceDefinition, load_catalog
from shared.domain.tracking_code import TrackingCodeGenerator
from shared.events import Applicant, InquiryOutcome, NextStep, RequestSubmitted
from testkit.data import national_id

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

CATALOG = load_catalog()
CODES = TrackingCodeGenerator(key=b"s" * 32, replica_id=2)
MAX_ATTEMPTS = 3
RNG = random.Random(1403)


def first(predicate: Callable[[str], bool], candidates: Callable[[], str]) -> str:
    """The first candidate the sandbox's pure helpers say satisfies the predicate."""
    for _ in range(10_000):
        candidate = candidates()
        if predicate(candidate):
            return candidate
    raise AssertionError("no candidate found")


def mobile() -> str:
    return f"0912{RNG.randrange(10**7):07d}"


def postal_code() -> str:
    return f"{RNG.randrange(10**10):010d}"


def property_id() -> str:
    return f"{RNG.randrange(1, 9999)}-{RNG.randrange(1, 99)}"


def nid() -> str:
    return national_id(RNG)


@dataclass(frozen=True)
class Citizen:
    """One applicant and the form fields they typed."""

    national_id: str
    birth_date: date
    mobile: str
    fields: dict[str, str]


def good_citizen() -> Citizen:
    """Someone every sandbox agency answers favourably for (the mobile registry lists one mobile per person)."""
    place = first(lambda code: postal_address(code) is not None, postal_code)
    lot = property_id()
    person = first(
        lambda n: is_alive(n) and tax_clearance(n)[0] and criminal_record_clean(n) and property_owner(n, lot),
        nid,
    )
    return Citizen(
        person, registered_birth_date(person), registered_mobile(person), {"postal_code": place, "property_id": lot}
    )


def failing(citizen: Citizen, agency: str) -> Citizen:
    """The same application, changed so that exactly one agency's answer fails."""
    n, fields = citizen.national_id, citizen.fields
    if agency == "civil-registry":
        born = citizen.birth_date
        return Citizen(n, born.replace(day=1 if born.day != 1 else 2), citizen.mobile, fields)
    if agency == "mobile-registry":
        return Citizen(n, citizen.birth_date, first(lambda m: not mobile_owned(n, m), mobile), fields)
    if agency == "postal":
        unknown = first(lambda code: postal_address(code) is None, postal_code)
        return Citizen(n, citizen.birth_date, citizen.mobile, {**fields, "postal_code": unknown})
    if agency == "property-registry":
        other = first(lambda lot: not property_owner(n, lot), property_id)
        return Citizen(n, citizen.birth_date, citizen.mobile, {**fields, "property_id": other})
    wanted: Callable[[str], bool] = {
        "tax": lambda p: not tax_clearance(p)[0],
        "judiciary": lambda p: not criminal_record_clean(p),
    }[agency]
    person = first(
        lambda p: (
            is_alive(p)
            and property_owner(p, fields["property_id"])
            # every other agency agrees: only the one under test fails
            and (tax_clearance(p)[0] or agency == "tax")
            and (criminal_record_clean(p) or agency == "judiciary")
            and wanted(p)
        ),
        nid,
    )
    return Citizen(person, registered_birth_date(person), registered_mobile(person), fields)


def submitted(service: ServiceDefinition, citizen: Citizen) -> RequestSubmitted:
    return RequestSubmitted(
        tracking_code=CODES.next_code(),
        service_id=service.id,
        catalog_version=service.version,
        agency=service.agency,
        applicant=Applicant(national_id=citizen.national_id, mobile=citizen.mobile, birth_date=citizen.birth_date),
        fields=citizen.fields,
        accept_by=datetime.now(UTC) + timedelta(seconds=30),
    )


@dataclass
class Sandbox:
    """The running sandbox, a control client for its faults and the agencies over HTTP."""

    endpoints: SandboxEndpoints
    control: httpx.AsyncClient
    agencies: Agencies

    async def fault(self, agency: str, **config: object) -> None:
        response = await self.control.put(f"/control/faults/{agency}", json=config)
        response.raise_for_status()

    async def stats(self, agency: str) -> dict[str, int]:
        response = await self.control.get("/control/stats")
        response.raise_for_status()
        counters: dict[str, int] = response.json()[agency]
        return counters


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    stop = asyncio.Event()
    ready: asyncio.Future[SandboxEndpoints] = asyncio.get_running_loop().create_future()
    settings = SandboxSettings(agencies_port=0, sms_port=0, smtp_port=0, smtp_http_port=0, shutdown_grace_s=1)
    task = asyncio.create_task(serve_sandbox(settings, stop=stop, on_ready=ready.set_result))
    try:
        endpoints = await asyncio.wait_for(ready, 30)
        agencies, clients = http_agencies(endpoints.agencies_url, timeout_s=2.0, max_attempts=MAX_ATTEMPTS)
        async with contextlib.AsyncExitStack() as stack:
            for client in clients:
                await stack.enter_async_context(client)
            control = await stack.enter_async_context(httpx.AsyncClient(base_url=endpoints.agencies_url))
            yield Sandbox(endpoints, control, agencies)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def subject(service: ServiceDefinition) -> str:
    """The agency whose answer the service is about: its last inquiry (identity for identity-only ones)."""
    return service.inquiries[-1].agency


SERVICES = CATALOG.all()
GOOD = good_citizen()


@pytest.mark.parametrize(
    ("service", "passes"),
    list(itertools.product(SERVICES, [True, False])),
    ids=[f"{s.id}-{'pass' if p else 'fail'}" for s, p in itertools.product(SERVICES, [True, False])],
)
async def test_every_seeded_service_against_the_sandbox(
    sandbox: Sandbox, service: ServiceDefinition, passes: bool
) -> None:
    agency = subject(service)
    citizen = GOOD if passes else failing(GOOD, agency)
    completed, verification = await verify_submission(
        catalog=CATALOG, event=submitted(service, citizen), agencies=sandbox.agencies
    )
    outcomes = {event.agency: event for event in completed}
    assert set(outcomes) == {inquiry.agency for inquiry in service.inquiries}
    assert all(event.attempts == 1 for event in completed)
    if passes:
        assert all(event.outcome is InquiryOutcome.PASSED for event in completed), completed
        automatic = service.decision is DecisionMode.AUTOMATIC
        assert verification.next_step is (NextStep.APPROVE if automatic else NextStep.AGENCY_REVIEW)
    else:
        failed = outcomes[agency]
        assert failed.outcome is InquiryOutcome.FAILED
        assert failed.reason_en and failed.reason_fa
        others = [event for event in completed if event.agency != agency]
        assert all(event.outcome is InquiryOutcome.PASSED for event in others), others
        assert verification.next_step is NextStep.NEEDS_CORRECTION
        assert verification.reason_en and failed.reason_en in verification.reason_en


async def test_tax_debt_is_told_in_rials(sandbox: Sandbox) -> None:
    service = CATALOG.get("tax-clearance-certificate")
    assert service is not None
    citizen = failing(GOOD, "tax")
    _, debt = tax_clearance(citizen.national_id)
    completed, _ = await verify_submission(
        catalog=CATALOG, event=submitted(service, citizen), agencies=sandbox.agencies
    )
    [tax] = [event for event in completed if event.agency == "tax"]
    assert tax.reason_en and f"{debt:,} rials" in tax.reason_en


async def test_agency_down_is_unavailable_after_the_budget_and_goes_to_review(sandbox: Sandbox) -> None:
    service = CATALOG.get("no-criminal-record-certificate")
    assert service is not None
    await sandbox.fault("judiciary", down=True)
    completed, verification = await verify_submission(
        catalog=CATALOG, event=submitted(service, GOOD), agencies=sandbox.agencies
    )
    [judiciary] = [event for event in completed if event.agency == "judiciary"]
    assert judiciary.outcome is InquiryOutcome.UNAVAILABLE
    assert judiciary.attempts == MAX_ATTEMPTS
    assert (await sandbox.stats("judiciary"))["down"] == MAX_ATTEMPTS
    assert verification.next_step is NextStep.AGENCY_REVIEW
    assert verification.inquiries["identity"] is InquiryOutcome.PASSED


async def test_flaky_agency_is_retried_and_attempts_match_the_errors_served(sandbox: Sandbox) -> None:
    service = CATALOG.get("postal-address-certificate")
    assert service is not None
    # The sandbox's dice are seeded (fault_seed 0), so this sequence of 503s is the same on every run.
    await sandbox.fault("postal", error_rate=0.5)
    retried = 0
    for _ in range(8):
        before = (await sandbox.stats("postal"))["errors"]
        completed, verification = await verify_submission(
            catalog=CATALOG, event=submitted(service, GOOD), agencies=sandbox.agencies
        )
        errors = (await sandbox.stats("postal"))["errors"] - before
        [postal] = [event for event in completed if event.agency == "postal"]
        if errors < MAX_ATTEMPTS:
            assert postal.outcome is InquiryOutcome.PASSED
            assert postal.attempts == errors + 1
            assert verification.next_step is NextStep.APPROVE
        else:
            assert (postal.outcome, postal.attempts) == (InquiryOutcome.UNAVAILABLE, MAX_ATTEMPTS)
            assert verification.next_step is NextStep.AGENCY_REVIEW
        retried += postal.attempts > 1
    assert retried > 0


async def test_inquiries_of_one_request_run_concurrently(sandbox: Sandbox) -> None:
    service = CATALOG.get("property-ownership-certificate")
    assert service is not None
    for agency in ("civil-registry", "property-registry"):
        await sandbox.fault(agency, latency_ms=400)
    started = asyncio.get_running_loop().time()
    completed, _ = await verify_submission(catalog=CATALOG, event=submitted(service, GOOD), agencies=sandbox.agencies)
    elapsed = asyncio.get_running_loop().time() - started
    assert [event.outcome for event in completed] == [InquiryOutcome.PASSED, InquiryOutcome.PASSED]
    assert elapsed < 0.75  # one latency, not two

"""inquiry's circuit breaker, guard and answer-cache keys, without Redis or agencies."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import date

import httpx
import pytest
from prometheus_client import REGISTRY

from services.inquiry.adapters import AgencyUnavailable, IdentityAnswer
from services.inquiry.adapters_cache import CachedCivilRegistry, with_cache
from services.inquiry.adapters_resilience import (
    DEFAULT_CACHE_TTL_S,
    AgencyRateLimit,
    AnswerCache,
    BreakerState,
    CircuitBreaker,
    ResilientGuard,
    is_failure_response,
)
from services.inquiry.service import Agencies

NATIONAL_ID = "0012345679"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingAttempt:
    """An HTTP attempt that answers with a fixed status (or raises) and counts its calls."""

    def __init__(self, status: int = 200, error: BaseException | None = None) -> None:
        self.status = status
        self.error = error
        self.calls = 0

    async def __call__(self) -> httpx.Response:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return httpx.Response(self.status)


class DenyingRateLimit(AgencyRateLimit):
    """A rate limit whose budget is always exhausted."""

    def __init__(self) -> None:
        pass

    async def acquire(self, agency: str) -> None:
        raise AgencyUnavailable("rate limited locally")


@pytest.fixture
def agency() -> str:
    """An agency name no other test uses, so metric samples start from zero."""
    return f"agency-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def state_of(breaker: CircuitBreaker) -> BreakerState:
    """The breaker's state, read through a call so mypy does not keep an earlier assert's narrowing."""
    return breaker.state


def state_gauge(agency: str) -> float | None:
    return REGISTRY.get_sample_value("khedmat_inquiry_breaker_state", {"agency": agency})


def transitions(agency: str, to_state: str) -> float:
    labels = {"agency": agency, "to_state": to_state}
    return REGISTRY.get_sample_value("khedmat_inquiry_breaker_transitions_total", labels) or 0.0


def calls(agency: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("khedmat_inquiry_calls_total", {"agency": agency, "outcome": outcome}) or 0.0


def open_breaker(agency: str, clock: FakeClock, *, threshold: int = 3) -> CircuitBreaker:
    breaker = CircuitBreaker(agency, failure_threshold=threshold, window=threshold, reset_timeout_s=10, clock=clock)
    for _ in range(threshold):
        breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN
    return breaker


def breaker_in_trial(agency: str, clock: FakeClock) -> CircuitBreaker:
    """An open breaker past its reset timeout (10 s), its one trial call let through."""
    breaker = open_breaker(agency, clock)
    clock.advance(10)
    assert breaker.allow()
    return breaker


def assert_shut_for_the_reset_timeout(breaker: CircuitBreaker, clock: FakeClock) -> None:
    """No call passes for the next reset timeout (10 s); then one does."""
    clock.advance(9)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()


def test_the_breaker_opens_after_the_threshold_of_consecutive_failures(agency: str, clock: FakeClock) -> None:
    breaker = CircuitBreaker(agency, failure_threshold=3, window=3, clock=clock)
    assert state_gauge(agency) == 0
    breaker.record_failure()
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.allow()
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN
    assert state_gauge(agency) == 2
    assert transitions(agency, "open") == 1


def test_a_windowed_breaker_opens_on_the_share_of_recent_failures_not_a_run(agency: str, clock: FakeClock) -> None:
    breaker = CircuitBreaker(agency, failure_threshold=5, window=10, clock=clock)
    # Failures interleaved with successes: 4 of the last 10 is under the threshold however long it goes on.
    for _ in range(20):
        for failed in (True, False, True, False, False):
            breaker.record_failure() if failed else breaker.record_success()
    assert state_of(breaker) is BreakerState.CLOSED
    # Old failures slide out of the window: only the last 10 calls count.
    for _ in range(10):
        breaker.record_success()
    for _ in range(4):
        breaker.record_failure()
    assert state_of(breaker) is BreakerState.CLOSED
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN, "5 of the last 10 failed"


def test_a_thirty_percent_flaky_agency_does_not_open_the_default_breaker(agency: str, clock: FakeClock) -> None:
    dice = random.Random(7)
    breaker = CircuitBreaker(agency, clock=clock)
    for _ in range(2000):
        breaker.record_failure() if dice.random() < 0.3 else breaker.record_success()
    assert state_of(breaker) is BreakerState.CLOSED
    assert transitions(agency, "open") == 0


def test_the_window_cannot_be_smaller_than_the_threshold(agency: str) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(agency, failure_threshold=5, window=4)


def test_a_success_resets_the_consecutive_failure_count(agency: str, clock: FakeClock) -> None:
    breaker = CircuitBreaker(agency, failure_threshold=3, window=3, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.CLOSED


def test_an_open_breaker_rejects_until_the_reset_timeout(agency: str, clock: FakeClock) -> None:
    breaker = open_breaker(agency, clock)
    assert not breaker.allow()
    clock.advance(9.9)
    assert not breaker.allow()
    assert state_of(breaker) is BreakerState.OPEN


def test_half_open_lets_one_trial_through_and_its_success_closes(agency: str, clock: FakeClock) -> None:
    breaker = open_breaker(agency, clock)
    clock.advance(10)
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert state_gauge(agency) == 1
    assert breaker.allow()
    assert not breaker.allow()  # the trial is still running
    breaker.record_success()
    assert state_of(breaker) is BreakerState.CLOSED
    assert state_gauge(agency) == 0
    assert breaker.allow()
    assert breaker.allow()
    assert (transitions(agency, "open"), transitions(agency, "half_open"), transitions(agency, "closed")) == (1, 1, 1)


def test_a_failed_trial_reopens_for_another_full_timeout(agency: str, clock: FakeClock) -> None:
    breaker = breaker_in_trial(agency, clock)
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN
    assert state_gauge(agency) == 2
    assert transitions(agency, "open") == 2
    assert_shut_for_the_reset_timeout(breaker, clock)


def test_a_trial_that_never_reports_back_does_not_block_for_ever(agency: str, clock: FakeClock) -> None:
    breaker = breaker_in_trial(agency, clock)
    # Silent for a whole reset timeout, the trial is presumed lost and another goes.
    assert_shut_for_the_reset_timeout(breaker, clock)


def test_a_released_trial_frees_the_slot_for_another(agency: str, clock: FakeClock) -> None:
    breaker = breaker_in_trial(agency, clock)
    breaker.release()
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert breaker.allow()


def test_breaker_settings_are_validated(agency: str) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(agency, failure_threshold=0)
    with pytest.raises(ValueError):
        CircuitBreaker(agency, reset_timeout_s=0)


@pytest.mark.parametrize(("status", "failure"), [(200, False), (404, False), (400, False), (429, True), (503, True)])
def test_which_responses_are_failures_for_the_breaker(status: int, failure: bool) -> None:
    assert is_failure_response(httpx.Response(status)) is failure


def guard_for(agency: str, clock: FakeClock, *, threshold: int = 2) -> ResilientGuard:
    return ResilientGuard({agency: CircuitBreaker(agency, failure_threshold=threshold, window=threshold, clock=clock)})


async def test_the_guard_passes_answers_through_and_counts_them(agency: str, clock: FakeClock) -> None:
    guard = guard_for(agency, clock)
    attempt = CountingAttempt(200)
    response = await guard(agency, attempt)
    assert response.status_code == 200
    assert attempt.calls == 1
    assert calls(agency, "ok") == 1


async def test_an_open_breaker_rejects_without_calling_the_agency(agency: str, clock: FakeClock) -> None:
    guard = guard_for(agency, clock)
    failing = CountingAttempt(503)
    assert (await guard(agency, failing)).status_code == 503  # responses come back unchanged
    assert (await guard(agency, failing)).status_code == 503
    assert state_of(guard.breaker(agency)) is BreakerState.OPEN
    assert calls(agency, "error") == 2
    fresh = CountingAttempt(200)
    with pytest.raises(AgencyUnavailable, match="circuit open"):
        await guard(agency, fresh)
    assert fresh.calls == 0
    assert calls(agency, "rejected_open") == 1


async def test_errors_are_reraised_unchanged_and_open_the_breaker(agency: str, clock: FakeClock) -> None:
    guard = guard_for(agency, clock)
    timeout = httpx.ConnectTimeout("slow")
    unavailable = AgencyUnavailable("HTTP 502")
    with pytest.raises(httpx.ConnectTimeout) as raised_timeout:
        await guard(agency, CountingAttempt(error=timeout))
    assert raised_timeout.value is timeout
    with pytest.raises(AgencyUnavailable) as raised_unavailable:
        await guard(agency, CountingAttempt(error=unavailable))
    assert raised_unavailable.value is unavailable
    assert state_of(guard.breaker(agency)) is BreakerState.OPEN


async def test_4xx_answers_keep_the_breaker_closed(agency: str, clock: FakeClock) -> None:
    guard = guard_for(agency, clock)
    for _ in range(5):
        assert (await guard(agency, CountingAttempt(404))).status_code == 404
    assert state_of(guard.breaker(agency)) is BreakerState.CLOSED


async def half_open_guard(agency: str, clock: FakeClock) -> ResilientGuard:
    """A guard whose breaker two failed calls opened, its reset timeout now past."""
    guard = guard_for(agency, clock)
    await guard(agency, CountingAttempt(500))
    await guard(agency, CountingAttempt(500))
    clock.advance(10)
    return guard


async def test_the_half_open_trial_goes_through_the_guard_and_closes(agency: str, clock: FakeClock) -> None:
    guard = await half_open_guard(agency, clock)
    trial = CountingAttempt(200)
    await guard(agency, trial)
    assert trial.calls == 1
    assert state_of(guard.breaker(agency)) is BreakerState.CLOSED


async def test_a_cancelled_trial_frees_the_half_open_slot(agency: str, clock: FakeClock) -> None:
    guard = await half_open_guard(agency, clock)
    with pytest.raises(asyncio.CancelledError):
        await guard(agency, CountingAttempt(error=asyncio.CancelledError()))
    assert guard.breaker(agency).allow()


async def test_an_exhausted_budget_rejects_without_calling_or_blaming_the_agency(agency: str, clock: FakeClock) -> None:
    guard = ResilientGuard(
        lambda name: CircuitBreaker(name, failure_threshold=1, window=1, clock=clock), DenyingRateLimit()
    )
    attempt = CountingAttempt(200)
    for _ in range(3):
        with pytest.raises(AgencyUnavailable, match="rate limited locally"):
            await guard(agency, attempt)
    assert attempt.calls == 0
    assert calls(agency, "rate_limited") == 3
    assert state_of(guard.breaker(agency)) is BreakerState.CLOSED


async def test_a_factory_makes_one_breaker_per_agency(agency: str) -> None:
    made: list[str] = []

    def factory(name: str) -> CircuitBreaker:
        made.append(name)
        return CircuitBreaker(name, failure_threshold=7)

    guard = ResilientGuard(factory)
    assert guard.breaker(agency) is guard.breaker(agency)
    assert guard.breaker(agency).failure_threshold == 7
    assert made == [agency]
    default = ResilientGuard().breaker(agency)  # defaults without a factory: half of the last 50 calls
    assert (default.failure_threshold, default.window) == (25, 50)


def test_cache_keys_hide_the_inputs_and_ignore_their_order() -> None:
    cache = AnswerCache(object(), hmac_key=b"k1")  # type: ignore[arg-type]
    inputs = {"national_id": NATIONAL_ID, "birth_date": "1951-03-20"}
    key = cache.key("civil-registry", "identity", inputs)
    assert key.startswith("khedmat:inq-cache:civil-registry:identity:")
    assert NATIONAL_ID not in key and "1951" not in key
    assert key == cache.key("civil-registry", "identity", dict(reversed(inputs.items())))
    assert key != cache.key("civil-registry", "identity", {**inputs, "national_id": "0012345670"})
    other = AnswerCache(object(), hmac_key=b"k2")  # type: ignore[arg-type]
    assert key != other.key("civil-registry", "identity", inputs)


def test_default_cache_policy() -> None:
    cache = AnswerCache(object(), hmac_key=b"k")  # type: ignore[arg-type]
    assert cache.ttl_s("civil-registry", "identity") == 86400
    assert cache.ttl_s("postal", "address") == 7 * 86400
    assert cache.ttl_s("mobile-registry", "ownership") == 3600
    for agency, check in [("tax", "clearance"), ("judiciary", "criminal-record"), ("property-registry", "ownership")]:
        assert DEFAULT_CACHE_TTL_S[(agency, check)] == 0
        assert cache.ttl_s(agency, check) == 0
    assert cache.ttl_s("pension-fund", "anything") == 0  # unlisted checks are never cached
    with pytest.raises(ValueError):
        AnswerCache(object(), hmac_key=b"")  # type: ignore[arg-type]


def test_only_the_cacheable_checks_are_wrapped() -> None:
    agencies = with_cache(Agencies(civil_registry=FakeIdentity()), cache=object())  # type: ignore[arg-type]
    assert isinstance(agencies.civil_registry, CachedCivilRegistry)
    assert agencies.tax is None and agencies.judiciary is None and agencies.property_registry is None


class FakeIdentity:
    """A civil registry that is never asked in this test."""

    async def check_identity(self, *, national_id: str, birth_date: date) -> IdentityAnswer:
        raise AssertionError("not called")

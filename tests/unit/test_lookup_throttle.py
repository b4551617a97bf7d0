"""tracking's lookup throttle with its per-process windows, configured without Redis and falling back from a dead
one: every lookup per client; per code, failures and anonymous successes in windows of their own, read before the
lookup; the applicant's own session spared the code's windows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from services.tracking.adapters_throttle import LookupDecision, LookupThrottle, code_digest
from shared.domain.digits import to_persian_digits
from shared.domain.tracking_code import format_for_display, verhoeff_check_digit
from shared.redis_client import make_redis

KEY = b"test-lookup-throttle-key"


def code(n: int) -> str:
    """A valid tracking code (right length and check digit), distinct for each n."""
    body = f"{n:014d}"
    return body + verhoeff_check_digit(body)


def degraded_count() -> float:
    return REGISTRY.get_sample_value("khedmat_tracking_lookup_throttle_degraded_total") or 0.0


def throttle(**limits: str) -> LookupThrottle:
    return LookupThrottle(None, code_key=KEY, **limits)


async def fail(throttle: LookupThrottle, tracking_code: str, times: int, *, client: str = "10.9.0.1") -> None:
    """Lookups admitted and finding nothing (a wrong national ID, or no such code)."""
    for _ in range(times):
        assert (await throttle.admit(client=client, tracking_code=tracking_code)).allowed
        await throttle.settle(tracking_code=tracking_code, found=False)


@pytest.fixture
async def dead_redis() -> AsyncIterator[aioredis.Redis]:
    """A client (built like the services') pointed at a closed port: every call is refused at once."""
    client = make_redis("redis://127.0.0.1:1/0")
    yield client
    await client.aclose()


async def test_the_31st_lookup_from_one_client_in_a_minute_is_denied() -> None:
    limits = throttle()
    decisions = [await limits.admit(client="10.0.0.1", tracking_code=code(i)) for i in range(31)]
    assert all(d == LookupDecision(allowed=True) for d in decisions[:30])
    denied = decisions[30]
    assert not denied.allowed
    assert denied.scope == "client"
    assert 55 <= denied.retry_after_s <= 60
    assert not denied.degraded
    assert (await limits.admit(client="10.0.0.2", tracking_code=code(0))).allowed  # another client


async def test_the_signed_in_owner_is_counted_against_their_client_budget_too() -> None:
    limits = throttle(per_client="2/minute")
    for _ in range(2):
        assert (await limits.admit(client="a", tracking_code=code(1), signed_in=True)).allowed
    assert (await limits.admit(client="a", tracking_code=code(1), signed_in=True)).scope == "client"


async def test_admitting_a_lookup_spends_nothing_of_the_codes_windows() -> None:
    limits = throttle(failures_per_code="2/minute", successes_per_code="2/minute")
    for client in range(20):
        assert (await limits.admit(client=f"10.0.1.{client}", tracking_code=code(7))).allowed


def refusals(window: str) -> float:
    return REGISTRY.get_sample_value("khedmat_tracking_lookup_refusals_total", {"window": window}) or 0.0


async def test_after_ten_failures_anonymous_lookups_of_the_code_are_denied_whoever_sends_them() -> None:
    limits = throttle()
    for client in range(10):
        await fail(limits, code(7), 1, client=f"10.0.1.{client}")
    before = {window: refusals(window) for window in ("client", "code-failed", "code-found")}
    denied = await limits.admit(client="10.0.1.99", tracking_code=code(7))
    # Counted by the window that was full: the metric tells guessing at codes from a client over its budget.
    assert {window: refusals(window) - count for window, count in before.items()} == {
        "client": 0,
        "code-failed": 1,
        "code-found": 0,
    }
    assert not denied.allowed
    assert denied.scope == "code"
    assert 55 <= denied.retry_after_s <= 60
    assert (await limits.admit(client="10.0.1.99", tracking_code=code(8))).allowed  # another code


async def test_a_codes_full_failure_window_never_stops_its_signed_in_owner() -> None:
    limits = throttle(failures_per_code="3/minute")
    await fail(limits, code(7), 3)
    assert not (await limits.admit(client="10.0.2.1", tracking_code=code(7))).allowed
    for _ in range(20):
        assert (await limits.admit(client="10.0.2.1", tracking_code=code(7), signed_in=True)).allowed
        await limits.settle(tracking_code=code(7), found=True, signed_in=True)


async def test_a_signed_in_lookup_that_finds_nothing_is_a_failure_like_any_other() -> None:
    # A session whose national ID is not the code's applicant's skips the gate but finds nothing: it is counted.
    limits = throttle(failures_per_code="2/minute")
    for _ in range(2):
        assert (await limits.admit(client="a", tracking_code=code(5), signed_in=True)).allowed
        await limits.settle(tracking_code=code(5), found=False, signed_in=True)
    assert (await limits.admit(client="b", tracking_code=code(5))).scope == "code"


async def test_failures_cannot_fill_the_success_window_nor_successes_the_failure_window() -> None:
    limits = throttle(per_client="1000/minute", failures_per_code="50/minute", successes_per_code="3/minute")
    await fail(limits, code(3), 40)
    assert (await limits.admit(client="a", tracking_code=code(3))).allowed
    for _ in range(3):
        await limits.settle(tracking_code=code(3), found=True)
    denied = await limits.admit(client="a", tracking_code=code(3))
    assert denied.scope == "code" and 55 <= denied.retry_after_s <= 60
    # The owner is spared the success window (a scraping bound) as well.
    assert (await limits.admit(client="a", tracking_code=code(3), signed_in=True)).allowed

    other = throttle(failures_per_code="2/minute", successes_per_code="100/minute")
    for _ in range(30):
        await other.settle(tracking_code=code(4), found=True)
    assert (await other.admit(client="a", tracking_code=code(4))).allowed


async def test_the_owners_successes_count_against_nothing() -> None:
    limits = throttle(successes_per_code="2/minute")
    for _ in range(10):
        await limits.settle(tracking_code=code(6), found=True, signed_in=True)
    assert (await limits.admit(client="a", tracking_code=code(6))).allowed


async def test_a_full_code_answers_the_same_whatever_national_id_is_sent() -> None:
    # The gate reads both code windows before the lookup: the throttle is never an oracle of the right ID.
    limits = throttle(successes_per_code="1/minute")
    await limits.settle(tracking_code=code(9), found=True)
    first, second = [await limits.admit(client=c, tracking_code=code(9)) for c in ("a", "b")]
    assert not first.allowed and not second.allowed and first.scope == second.scope == "code"


async def test_one_code_however_typed_shares_one_failure_window() -> None:
    limits = throttle(failures_per_code="2/minute")
    await fail(limits, code(3), 1)
    await fail(limits, to_persian_digits(format_for_display(code(3))), 1)
    assert (await limits.admit(client="c", tracking_code=code(3))).scope == "code"


async def test_text_that_is_no_code_is_counted_like_a_code() -> None:
    limits = throttle(failures_per_code="2/minute")
    await fail(limits, "123", 2)
    assert (await limits.admit(client="a", tracking_code="۱۲۳")).scope == "code"


async def test_several_limits_apply_and_the_tightest_window_answers() -> None:
    limits = throttle(per_client="5/minute;2/second")
    assert (await limits.admit(client="a", tracking_code=code(1))).allowed
    assert (await limits.admit(client="a", tracking_code=code(2))).allowed
    denied = await limits.admit(client="a", tracking_code=code(3))
    assert denied.scope == "client"
    assert denied.retry_after_s == 1


async def test_a_denied_client_may_look_up_again_once_the_window_moves_on() -> None:
    limits = throttle(per_client="2/second")
    for i in range(2):
        assert (await limits.admit(client="a", tracking_code=code(i))).allowed
    assert not (await limits.admit(client="a", tracking_code=code(2))).allowed
    await asyncio.sleep(1.1)
    assert (await limits.admit(client="a", tracking_code=code(2))).allowed


async def test_a_closed_code_opens_again_once_its_failures_leave_the_window() -> None:
    limits = throttle(failures_per_code="2/second")
    await fail(limits, code(2), 2)
    assert not (await limits.admit(client="a", tracking_code=code(2))).allowed
    await asyncio.sleep(1.1)
    assert (await limits.admit(client="a", tracking_code=code(2))).allowed


async def test_a_dead_redis_falls_back_to_per_process_limits_never_to_none(
    dead_redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    limits = LookupThrottle(dead_redis, per_client="3/minute", code_key=KEY)
    before = degraded_count()
    with caplog.at_level(logging.WARNING, logger="services.tracking.adapters_throttle"):
        decisions = [await limits.admit(client="10.0.3.1", tracking_code=code(9)) for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert all(d.degraded for d in decisions)
    assert decisions[3].scope == "client"
    assert 55 <= decisions[3].retry_after_s <= 60
    assert degraded_count() == before + 5
    warnings = [r.getMessage() for r in caplog.records if r.name == "services.tracking.adapters_throttle"]
    assert len(warnings) == 5
    assert all("ConnectionError" in message for message in warnings)
    assert not [m for m in warnings if "10.0.3.1" in m or code(9) in m or code_digest(code(9), KEY) in m]


async def test_a_dead_redis_still_closes_a_code_after_its_failures(dead_redis: aioredis.Redis) -> None:
    limits = LookupThrottle(dead_redis, failures_per_code="2/minute", code_key=KEY)
    before = degraded_count()
    for client in range(2):
        await fail(limits, code(5), 1, client=f"10.0.4.{client}")
    denied = await limits.admit(client="10.0.4.9", tracking_code=code(5))
    assert denied == LookupDecision(allowed=False, retry_after_s=denied.retry_after_s, scope="code", degraded=True)
    assert degraded_count() == before + 5  # three admissions and two counted failures
    assert (await limits.admit(client="10.0.4.9", tracking_code=code(5), signed_in=True)).allowed


def test_the_code_digest_is_keyed_and_hides_the_code() -> None:
    digest = code_digest(code(1), KEY)
    assert len(digest) == 64
    assert code(1) not in digest
    assert digest != code_digest(code(1), b"another-key")
    assert digest == code_digest(format_for_display(code(1)), KEY)


@pytest.mark.parametrize(
    "kwargs",
    [{"per_client": "nonsense"}, {"failures_per_code": ""}, {"successes_per_code": "x"}, {"code_key": b""}],
)
def test_bad_configuration_is_refused(kwargs: dict[str, object]) -> None:
    arguments: dict[str, object] = {"code_key": KEY, **kwargs}
    with pytest.raises(ValueError):
        LookupThrottle(None, **arguments)  # type: ignore[arg-type]

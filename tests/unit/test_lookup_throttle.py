"""tracking's lookup throttle with its per-process limiter: configured without Redis, and falling back from a
dead one."""

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


@pytest.fixture
async def dead_redis() -> AsyncIterator[aioredis.Redis]:
    """A client (built like the services') pointed at a closed port: every call is refused at once."""
    client = make_redis("redis://127.0.0.1:1/0")
    yield client
    await client.aclose()


async def test_the_31st_lookup_from_one_client_in_a_minute_is_denied() -> None:
    throttle = LookupThrottle(None, code_key=KEY)
    decisions = [await throttle.hit(client="10.0.0.1", tracking_code=code(i)) for i in range(31)]
    assert all(d == LookupDecision(allowed=True) for d in decisions[:30])
    denied = decisions[30]
    assert not denied.allowed
    assert denied.scope == "client"
    assert 55 <= denied.retry_after_s <= 60
    assert not denied.degraded
    assert (await throttle.hit(client="10.0.0.2", tracking_code=code(0))).allowed  # another client


async def test_the_11th_lookup_of_one_code_is_denied_whichever_client_sends_it() -> None:
    throttle = LookupThrottle(None, code_key=KEY)
    decisions = [await throttle.hit(client=f"10.0.1.{i}", tracking_code=code(7)) for i in range(11)]
    assert all(d.allowed for d in decisions[:10])
    denied = decisions[10]
    assert not denied.allowed
    assert denied.scope == "code"
    assert 55 <= denied.retry_after_s <= 60
    assert not denied.degraded


async def test_different_codes_are_counted_separately() -> None:
    throttle = LookupThrottle(None, per_client="100/minute", per_code="2/minute", code_key=KEY)
    for _ in range(2):
        assert (await throttle.hit(client="10.0.2.1", tracking_code=code(1))).allowed
    assert (await throttle.hit(client="10.0.2.1", tracking_code=code(1))).scope == "code"
    assert (await throttle.hit(client="10.0.2.1", tracking_code=code(2))).allowed
    assert (await throttle.hit(client="10.0.2.1", tracking_code=code(2))).allowed


async def test_one_code_however_typed_shares_one_counter() -> None:
    throttle = LookupThrottle(None, per_client="100/minute", per_code="2/minute", code_key=KEY)
    assert (await throttle.hit(client="a", tracking_code=code(3))).allowed
    assert (await throttle.hit(client="b", tracking_code=to_persian_digits(format_for_display(code(3))))).allowed
    assert (await throttle.hit(client="c", tracking_code=code(3))).scope == "code"


async def test_text_that_is_no_code_is_counted_like_a_code() -> None:
    # The throttle runs before the lookup: a guess at a code that cannot exist spends budget all the same.
    throttle = LookupThrottle(None, per_client="100/minute", per_code="2/minute", code_key=KEY)
    for _ in range(2):
        assert (await throttle.hit(client="a", tracking_code="123")).allowed
    assert (await throttle.hit(client="a", tracking_code="۱۲۳")).scope == "code"


async def test_a_client_over_its_limit_does_not_spend_the_codes_budget() -> None:
    throttle = LookupThrottle(None, per_client="1/minute", per_code="2/minute", code_key=KEY)
    assert (await throttle.hit(client="a", tracking_code=code(4))).allowed
    assert (await throttle.hit(client="a", tracking_code=code(4))).scope == "client"
    assert (await throttle.hit(client="b", tracking_code=code(4))).allowed  # the code's 2nd, not its 3rd


async def test_several_limits_apply_and_the_tightest_window_answers() -> None:
    throttle = LookupThrottle(None, per_client="5/minute;2/second", code_key=KEY)
    assert (await throttle.hit(client="a", tracking_code=code(1))).allowed
    assert (await throttle.hit(client="a", tracking_code=code(2))).allowed
    denied = await throttle.hit(client="a", tracking_code=code(3))
    assert denied.scope == "client"
    assert denied.retry_after_s == 1


async def test_a_denied_client_may_look_up_again_once_the_window_moves_on() -> None:
    throttle = LookupThrottle(None, per_client="2/second", code_key=KEY)
    for i in range(2):
        assert (await throttle.hit(client="a", tracking_code=code(i))).allowed
    assert not (await throttle.hit(client="a", tracking_code=code(2))).allowed
    await asyncio.sleep(1.1)
    assert (await throttle.hit(client="a", tracking_code=code(2))).allowed


async def test_a_dead_redis_falls_back_to_per_process_limits_never_to_none(
    dead_redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    throttle = LookupThrottle(dead_redis, per_client="3/minute", per_code="100/minute", code_key=KEY)
    before = degraded_count()
    with caplog.at_level(logging.WARNING, logger="services.tracking.adapters_throttle"):
        decisions = [await throttle.hit(client="10.0.3.1", tracking_code=code(9)) for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert all(d.degraded for d in decisions)
    assert decisions[3].scope == "client"
    assert 55 <= decisions[3].retry_after_s <= 60
    assert degraded_count() == before + 5
    warnings = [r.getMessage() for r in caplog.records if r.name == "services.tracking.adapters_throttle"]
    assert len(warnings) == 5
    assert all("ConnectionError" in message for message in warnings)
    assert not [m for m in warnings if "10.0.3.1" in m or code(9) in m or code_digest(code(9), KEY) in m]


async def test_a_dead_redis_still_limits_one_code_across_clients(dead_redis: aioredis.Redis) -> None:
    throttle = LookupThrottle(dead_redis, per_client="100/minute", per_code="2/minute", code_key=KEY)
    decisions = [await throttle.hit(client=f"10.0.4.{i}", tracking_code=code(5)) for i in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert decisions[2] == LookupDecision(
        allowed=False, retry_after_s=decisions[2].retry_after_s, scope="code", degraded=True
    )


def test_the_code_digest_is_keyed_and_hides_the_code() -> None:
    digest = code_digest(code(1), KEY)
    assert len(digest) == 64
    assert code(1) not in digest
    assert digest != code_digest(code(1), b"another-key")
    assert digest == code_digest(format_for_display(code(1)), KEY)


@pytest.mark.parametrize("kwargs", [{"per_client": "nonsense"}, {"per_code": ""}, {"code_key": b""}])
def test_bad_configuration_is_refused(kwargs: dict[str, object]) -> None:
    arguments: dict[str, object] = {"code_key": KEY, **kwargs}
    with pytest.raises(ValueError):
        LookupThrottle(None, **arguments)  # type: ignore[arg-type]

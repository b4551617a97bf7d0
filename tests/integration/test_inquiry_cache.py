"""inquiry answers cacheable checks from the shared Redis cache and always asks for the rest (real Redis)."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from datetime import date

import redis.asyncio as aioredis

from services.inquiry.adapters import AgencyUnavailable, IdentityAnswer, PostalAddress
from services.inquiry.adapters_cache import CachedCivilRegistry, CachedPostalRegistry
from services.inquiry.adapters_resilience import AnswerCache
from testkit.infra import Servers


@dataclass
class CountingRegistry:
    """A civil registry that counts its calls (and can be down)."""

    down: bool = False
    calls: list[str] = field(default_factory=list)

    async def check_identity(self, *, national_id: str, birth_date: date) -> IdentityAnswer:
        self.calls.append(national_id)
        if self.down:
            raise AgencyUnavailable("HTTP 503")
        return IdentityAnswer(match=True, alive=True)


async def test_a_second_identity_check_is_answered_from_the_cache(servers: Servers) -> None:
    client = aioredis.Redis.from_url(servers.redis_url)
    cache = AnswerCache(client, hmac_key=uuid.uuid4().bytes)  # a fresh key: nothing cached by earlier runs
    inner = CountingRegistry()
    registry = CachedCivilRegistry(inner, cache)
    try:
        first = await registry.check_identity(national_id="0012345679", birth_date=date(1951, 3, 20))
        second = await registry.check_identity(national_id="0012345679", birth_date=date(1951, 3, 20))
        other = await registry.check_identity(national_id="0012345679", birth_date=date(1951, 3, 21))
        keys = [key.decode() async for key in client.scan_iter("khedmat:inq-cache:*")]
    finally:
        await client.aclose()
    assert first == second == other == IdentityAnswer(match=True, alive=True)
    assert len(inner.calls) == 2  # the second call was a hit; another birth date is another question
    assert not [key for key in keys if "0012345679" in key]


async def test_an_unavailable_agency_leaves_nothing_in_the_cache(servers: Servers) -> None:
    client = aioredis.Redis.from_url(servers.redis_url)
    cache = AnswerCache(client, hmac_key=uuid.uuid4().bytes)
    inner = CountingRegistry(down=True)
    registry = CachedCivilRegistry(inner, cache)
    try:
        for _ in range(2):
            with contextlib.suppress(AgencyUnavailable):
                await registry.check_identity(national_id="0012345679", birth_date=date(1951, 3, 20))
        inputs = {"national_id": "0012345679", "birth_date": "1951-03-20"}
        cached = await cache.get("civil-registry", "identity", inputs)
    finally:
        await client.aclose()
    assert len(inner.calls) == 2 and cached is None


@dataclass
class CountingPostal:
    """A postal registry that knows one address."""

    calls: list[str] = field(default_factory=list)

    async def address(self, postal_code: str) -> PostalAddress | None:
        self.calls.append(postal_code)
        if postal_code != "1234567891":
            return None
        return PostalAddress(
            postal_code=postal_code,
            province="تهران",
            city="تهران",
            street="ولیعصر",
            alley="یکم",
            plaque=12,
            unit=3,
            full_address="تهران، خیابان ولیعصر، کوچهٔ یکم، پلاک ۱۲، واحد ۳",
        )


async def test_a_known_address_is_cached_and_an_unknown_code_is_asked_every_time(servers: Servers) -> None:
    client = aioredis.Redis.from_url(servers.redis_url)
    inner = CountingPostal()
    postal = CachedPostalRegistry(inner, AnswerCache(client, hmac_key=uuid.uuid4().bytes))
    try:
        first = await postal.address("1234567891")
        second = await postal.address("1234567891")
        missing = [await postal.address("1111111111") for _ in range(2)]
    finally:
        await client.aclose()
    assert first == second and first is not None and first["plaque"] == 12
    assert missing == [None, None]
    assert inner.calls == ["1234567891", "1111111111", "1111111111"]

"""Agency adapters that answer from the shared cache when the agency allows it (decorators, same protocols).

Only the checks `adapters_resilience.DEFAULT_CACHE_TTL_S` lists are wrapped; tax clearance, criminal record and
property ownership always ask the agency, because they must be current at decision time. Only a usable
answer is stored: an unavailable or refused agency raises before anything reaches the cache.
"""

from __future__ import annotations

import dataclasses
import typing
from datetime import date
from typing import Any, TypeGuard

from .adapters import CivilRegistry, IdentityAnswer, MobileRegistry, PostalAddress, PostalRegistry
from .adapters_agencies import Agencies
from .adapters_resilience import AnswerCache

_POSTAL_FIELDS: dict[str, type] = typing.get_type_hints(PostalAddress)


def _is_postal_address(value: dict[str, Any]) -> TypeGuard[PostalAddress]:
    """A cached value has exactly the address's fields, each of its type (bool is not an int here)."""
    return set(value) == set(_POSTAL_FIELDS) and all(type(value[name]) is kind for name, kind in _POSTAL_FIELDS.items())


class CachedCivilRegistry:
    """The civil registry's identity check, cached per (national ID, birth date)."""

    def __init__(self, inner: CivilRegistry, cache: AnswerCache) -> None:
        self.inner = inner
        self.cache = cache

    async def check_identity(self, *, national_id: str, birth_date: date) -> IdentityAnswer:
        inputs = {"national_id": national_id, "birth_date": birth_date.isoformat()}
        hit = await self.cache.get("civil-registry", "identity", inputs)
        if hit is not None and isinstance(hit.get("match"), bool) and isinstance(hit.get("alive"), bool):
            return IdentityAnswer(match=hit["match"], alive=hit["alive"])
        answer = await self.inner.check_identity(national_id=national_id, birth_date=birth_date)
        await self.cache.set("civil-registry", "identity", inputs, {"match": answer.match, "alive": answer.alive})
        return answer


class CachedMobileRegistry:
    """The mobile line-ownership check, cached per (national ID, mobile)."""

    def __init__(self, inner: MobileRegistry, cache: AnswerCache) -> None:
        self.inner = inner
        self.cache = cache

    async def check_ownership(self, national_id: str, mobile: str) -> bool:
        inputs = {"national_id": national_id, "mobile": mobile}
        hit = await self.cache.get("mobile-registry", "ownership", inputs)
        if hit is not None and isinstance(hit.get("owned"), bool):
            owned: bool = hit["owned"]
            return owned
        owned = await self.inner.check_ownership(national_id, mobile)
        await self.cache.set("mobile-registry", "ownership", inputs, {"owned": owned})
        return owned


class CachedPostalRegistry:
    """The postal address lookup, cached per postal code (a known address; "no such code" is not cached)."""

    def __init__(self, inner: PostalRegistry, cache: AnswerCache) -> None:
        self.inner = inner
        self.cache = cache

    async def address(self, postal_code: str) -> PostalAddress | None:
        inputs = {"postal_code": postal_code}
        hit = await self.cache.get("postal", "address", inputs)
        if hit is not None and _is_postal_address(hit):
            return hit  # a garbled entry is a miss: the agency is asked and the entry overwritten
        found = await self.inner.address(postal_code)
        if found is not None:
            await self.cache.set("postal", "address", inputs, dict(found))
        return found


def with_cache(agencies: Agencies, cache: AnswerCache) -> Agencies:
    """The same agencies, the cacheable checks answered from the shared cache first."""
    return dataclasses.replace(
        agencies,
        civil_registry=CachedCivilRegistry(agencies.civil_registry, cache),
        mobile_registry=CachedMobileRegistry(agencies.mobile_registry, cache) if agencies.mobile_registry else None,
        postal=CachedPostalRegistry(agencies.postal, cache) if agencies.postal else None,
    )

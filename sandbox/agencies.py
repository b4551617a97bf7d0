"""Simulated government agency APIs whose answers are derived deterministically from the request."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from sandbox._common import new_app, sha256_int
from sandbox.faults import (
    FaultConfig,
    FaultInjectionMiddleware,
    FaultRegistry,
    UnknownAgencyError,
    hide_simulated_drops_in_uvicorn_log,
)

# ASCII only: str.isdigit() and \d also accept Persian and Arabic-Indic digits, which no registry takes.
_TEN_DIGITS = re.compile(r"[0-9]{10}")
_MOBILE = re.compile(r"09[0-9]{9}")

_FIRST_NAMES = (
    "علی", "محمد", "حسین", "رضا", "مهدی", "امیر",
    "زهرا", "فاطمه", "مریم", "سارا", "نرگس", "نازنین",
)  # fmt: skip
_LAST_NAMES = (
    "محمدی", "حسینی", "احمدی", "رضایی", "کریمی", "موسوی",
    "جعفری", "کاظمی", "رحیمی", "هاشمی", "صادقی", "نوری",
)  # fmt: skip
_CITIES = (
    ("تهران", "تهران"),
    ("اصفهان", "اصفهان"),
    ("فارس", "شیراز"),
    ("خراسان رضوی", "مشهد"),
    ("آذربایجان شرقی", "تبریز"),
    ("گیلان", "رشت"),
    ("خوزستان", "اهواز"),
    ("کرمان", "کرمان"),
)
_STREETS = (
    "خیابان آزادی", "خیابان انقلاب", "خیابان ولیعصر", "بلوار کشاورز",
    "خیابان شریعتی", "خیابان فردوسی", "بلوار امام رضا", "خیابان حافظ",
)  # fmt: skip
_ALLEYS = ("کوچه بهار", "کوچه لاله", "کوچه نسترن", "کوچه یاس", "کوچه سرو", "کوچه ارغوان")


# --- Deterministic registry data -------------------------------------------------------------------


def national_id_check_digit(first_nine: str) -> int:
    """The check digit an Iranian national ID must end with, given its first nine digits."""
    if len(first_nine) != 9 or not first_nine.isascii() or not first_nine.isdigit():
        raise ValueError("expected exactly nine ASCII digits")
    remainder = sum(int(digit) * (10 - i) for i, digit in enumerate(first_nine)) % 11
    return remainder if remainder < 2 else 11 - remainder


def complete_national_id(first_nine: str) -> str:
    """A valid national ID made from nine digits plus their check digit (handy for building test data)."""
    return f"{first_nine}{national_id_check_digit(first_nine)}"


def is_valid_national_id(national_id: str) -> bool:
    """Whether a string is a valid Iranian national ID: ten digits, correct check digit, not all alike."""
    if not _TEN_DIGITS.fullmatch(national_id) or len(set(national_id)) == 1:
        return False
    return national_id_check_digit(national_id[:9]) == int(national_id[9])


def _require_valid_national_id(national_id: str) -> None:
    # People only exist for valid IDs; answering for any other string would hide caller bugs.
    if not is_valid_national_id(national_id):
        raise ValueError(f"not a valid national ID: {national_id!r}")


def _person_hash(national_id: str) -> int:
    _require_valid_national_id(national_id)
    return sha256_int(national_id)


def registered_birth_date(national_id: str) -> date:
    """The birth date the civil registry holds for a (valid) national ID."""
    return date(1950, 1, 1) + timedelta(days=_person_hash(national_id) % 20000)


def person_name(national_id: str) -> tuple[str, str]:
    """The (first name, last name) the civil registry holds for a (valid) national ID."""
    h = _person_hash(national_id)
    return _FIRST_NAMES[(h >> 8) % len(_FIRST_NAMES)], _LAST_NAMES[(h >> 16) % len(_LAST_NAMES)]


def is_alive(national_id: str) -> bool:
    """Whether the civil registry records the person as alive (about 1 in 97 people is deceased)."""
    return _person_hash(national_id) % 97 != 0


def registered_mobile(national_id: str) -> str:
    """The one mobile the registry lists under a (valid) national ID, as a real registry (Shahkar) would: a
    random number then belongs to nobody, so sign-in and takeover tests mean something."""
    _require_valid_national_id(national_id)
    return f"09{sha256_int(f'mobile:{national_id}') % 10**9:09d}"


def mobile_owned(national_id: str, mobile: str) -> bool:
    """Whether the mobile registry lists the number under the national ID: only its registered mobile."""
    return mobile == registered_mobile(national_id)


def tax_clearance(national_id: str) -> tuple[bool, int]:
    """(cleared, debt in rials) as the tax authority reports them; 1 in 5 people owes tax."""
    # Every agency salts the hash with its own name, so one person's answers do not correlate.
    _require_valid_national_id(national_id)
    h = sha256_int(f"tax:{national_id}")
    if h % 5 != 0:
        return True, 0
    return False, ((h >> 8) % 5000 + 1) * 100_000


def criminal_record_clean(national_id: str) -> bool:
    """Whether the judiciary reports a clean criminal record (1 in 20 people has one)."""
    _require_valid_national_id(national_id)
    return sha256_int(f"judiciary:{national_id}") % 20 != 0


def property_owner(national_id: str, property_id: str) -> bool:
    """Whether the property registry lists the person as an owner of the property (3 in 4 pairs)."""
    _require_valid_national_id(national_id)
    return sha256_int(f"property:{national_id}:{property_id}") % 4 != 0


@dataclass(frozen=True)
class PostalAddress:
    """An address as the postal service returns it."""

    postal_code: str
    province: str
    city: str
    street: str
    alley: str
    plaque: int
    unit: int
    full_address: str = field(init=False)

    def __post_init__(self) -> None:
        # Made from the parts, so the one-line form can never disagree with them.
        full = f"{self.province}، {self.city}، {self.street}، {self.alley}، پلاک {self.plaque}، واحد {self.unit}"
        object.__setattr__(self, "full_address", full)


def is_valid_postal_code(postal_code: str) -> bool:
    """Whether a string has the shape of an Iranian postal code (ten ASCII digits)."""
    return _TEN_DIGITS.fullmatch(postal_code) is not None


def postal_address(postal_code: str) -> PostalAddress | None:
    """The address for a postal code, or None for the codes (1 in 13) the postal service does not know."""
    if not is_valid_postal_code(postal_code):
        raise ValueError(f"not a valid postal code: {postal_code!r}")
    h = sha256_int(postal_code)
    if h % 13 == 0:
        return None
    province, city = _CITIES[(h >> 8) % len(_CITIES)]
    return PostalAddress(
        postal_code=postal_code,
        province=province,
        city=city,
        street=_STREETS[(h >> 16) % len(_STREETS)],
        alley=_ALLEYS[(h >> 24) % len(_ALLEYS)],
        plaque=(h >> 32) % 200 + 1,
        unit=(h >> 40) % 20 + 1,
    )


# --- HTTP API -----------------------------------------------------------------------------------------

Answer = dict[str, object] | JSONResponse


class _Request(BaseModel):
    # Real agencies ignore fields they do not know, and so do we.
    model_config = ConfigDict(extra="ignore")


class _PersonRequest(_Request):
    national_id: str


class IdentityRequest(_PersonRequest):
    """Body of the civil registry identity inquiry."""

    birth_date: date


class MobileOwnershipRequest(_PersonRequest):
    """Body of the mobile registry ownership inquiry."""

    mobile: str


class NationalIdRequest(_PersonRequest):
    """Body of inquiries keyed by a national ID alone."""


class PostalCodeRequest(_Request):
    """Body of the postal service's address inquiry (in the body, not the path: URLs end up in logs and spans)."""

    postal_code: str


class PropertyOwnershipRequest(_PersonRequest):
    """Body of the property registry ownership inquiry."""

    property_id: str = Field(min_length=1, max_length=64)


def _error(status_code: int, error: str) -> JSONResponse:
    return JSONResponse(status_code=status_code, content={"error": error})


_Person = TypeVar("_Person", bound=_PersonRequest)


def _about_a_person(answer: Callable[[_Person], Answer]) -> Callable[[_Person], Coroutine[Any, Any, Answer]]:
    """The route of an inquiry about a person: 422 for an invalid national ID, else the agency's answer."""

    # wraps: FastAPI reads the body's type from the answer's signature.
    @functools.wraps(answer)
    async def route(body: _Person) -> Answer:
        if not is_valid_national_id(body.national_id):
            return _error(422, "invalid_national_id")
        return answer(body)

    return route


@_about_a_person
def identity(body: IdentityRequest) -> Answer:
    first_name, last_name = person_name(body.national_id)
    return {
        "national_id": body.national_id,
        "match": body.birth_date == registered_birth_date(body.national_id),
        "alive": is_alive(body.national_id),
        "first_name": first_name,
        "last_name": last_name,
    }


@_about_a_person
def mobile_ownership(body: MobileOwnershipRequest) -> Answer:
    if not _MOBILE.fullmatch(body.mobile):
        return _error(422, "invalid_mobile")
    return {"owned": mobile_owned(body.national_id, body.mobile)}


async def address(body: PostalCodeRequest) -> Answer:
    if not is_valid_postal_code(body.postal_code):
        return _error(422, "invalid_postal_code")
    found = postal_address(body.postal_code)
    if found is None:
        return _error(404, "postal_code_not_found")
    return asdict(found)


@_about_a_person
def clearance(body: NationalIdRequest) -> Answer:
    cleared, debt_rials = tax_clearance(body.national_id)
    return {"cleared": cleared, "debt_rials": debt_rials}


@_about_a_person
def criminal_record(body: NationalIdRequest) -> Answer:
    return {"clean": criminal_record_clean(body.national_id)}


@_about_a_person
def property_ownership(body: PropertyOwnershipRequest) -> Answer:
    return {"owner": property_owner(body.national_id, body.property_id)}


Route = Callable[..., Coroutine[Any, Any, Answer]]

# Each agency's one inquiry, POSTed to /<agency>/v1<path>; the route is named for the path's last word.
_INQUIRIES: dict[str, tuple[str, Route]] = {
    "civil-registry": ("/identity", identity),
    "mobile-registry": ("/ownership", mobile_ownership),
    "postal": ("/address", address),
    "tax": ("/clearance", clearance),
    "judiciary": ("/criminal-record", criminal_record),
    "property-registry": ("/ownership", property_ownership),
}


def _inquiries() -> APIRouter:
    router = APIRouter()
    for agency, (path, route) in _INQUIRIES.items():
        name = path.removeprefix("/").replace("-", "_")
        router.add_api_route(
            f"/{agency}/v1{path}", route, methods=["POST"], response_model=None, name=name, tags=[agency]
        )
    return router


def _control(faults: FaultRegistry) -> APIRouter:
    router = APIRouter(prefix="/control", tags=["control"])

    @router.get("/faults")
    async def list_faults() -> dict[str, FaultConfig]:
        return faults.all()

    @router.delete("/faults", status_code=204)
    async def reset_faults() -> Response:
        faults.reset()
        return Response(status_code=204)

    @router.get("/faults/{agency}", response_model=None)
    async def get_faults(agency: str) -> FaultConfig | JSONResponse:
        try:
            return faults.get(agency)
        except UnknownAgencyError:
            return _error(404, "unknown_agency")

    @router.put("/faults/{agency}", response_model=None)
    async def set_faults(agency: str, config: FaultConfig) -> FaultConfig | JSONResponse:
        try:
            faults.set(agency, config)
        except UnknownAgencyError:
            return _error(404, "unknown_agency")
        return config

    @router.get("/stats")
    async def stats() -> dict[str, dict[str, int]]:
        return {agency: asdict(counters) for agency, counters in faults.stats().items()}

    @router.delete("/stats", status_code=204)
    async def reset_stats() -> Response:
        faults.reset_stats()
        return Response(status_code=204)

    return router


def create_agencies_app(*, faults: FaultRegistry | None = None) -> FastAPI:
    """The simulated agencies (one path prefix each), plus `/control` for faults and call counts."""
    registry = faults if faults is not None else FaultRegistry()
    app = new_app("Khedmat sandbox: government agencies")
    app.include_router(_inquiries())
    app.include_router(_control(registry))
    app.add_middleware(FaultInjectionMiddleware, registry=registry)
    app.state.faults = registry
    hide_simulated_drops_in_uvicorn_log()
    return app

"""Test data the sandbox agencies will recognise: valid national IDs, their registered birth dates and mobiles."""

from __future__ import annotations

import random
from typing import Any

from sandbox.agencies import is_alive, registered_birth_date, registered_mobile
from shared.domain.identity import make_valid_national_id

SERVICE_ID = "birth-certificate-duplicate"


def national_id(rng: random.Random | None = None) -> str:
    """A national ID with a correct check digit."""
    rng = rng or random.Random()
    while True:
        try:
            return make_valid_national_id(f"{rng.randrange(10**9):09d}")
        except ValueError:
            continue


def living_national_id(rng: random.Random | None = None) -> str:
    """A national ID the sandbox civil registry records as alive: about 1 in 97 is deceased, and a request of
    theirs ends in NEEDS_CORRECTION, which made the tests that wait for APPROVED fail now and then."""
    while not is_alive(nid := national_id(rng)):
        pass
    return nid


def submission(
    *, nid: str | None = None, matching_birth_date: bool = True, reason: str = "lost", email: str | None = None
) -> dict[str, Any]:
    """A submission body for the seeded birth-certificate service that the civil registry will confirm, with the
    mobile the mobile registry lists under the national ID (so the citizen can also sign in with it)."""
    nid = nid or living_national_id()
    born = registered_birth_date(nid)
    if not matching_birth_date:
        born = born.replace(day=1 if born.day != 1 else 2)
    return {
        "service_id": SERVICE_ID,
        "applicant": {
            "national_id": nid,
            "mobile": registered_mobile(nid),
            "email": email or f"citizen.{nid}@example.ir",
            "birth_date": born.isoformat(),
        },
        "fields": {"reason": reason},
    }

"""Iranian personal identifiers: national ID (kod-e melli), mobile number and postal code."""

from __future__ import annotations

import re
from typing import Final, Literal

from shared.domain.digits import is_ascii_digits, normalize_digits, strip_separators

NATIONAL_ID_LENGTH: Final = 10
POSTAL_CODE_LENGTH: Final = 10

# Prefixes a caller may put before the 10 significant digits (9xxxxxxxxx); [0-9] rather than \d
# because \d would also accept digits from other scripts that normalize_digits does not map.
_MOBILE_PATTERN: Final = re.compile(r"(?:\+98|0098|98|0)?(9[0-9]{9})")
_POSTAL_FORBIDDEN_IN_PREFIX: Final = frozenset("02")

NationalIdReason = Literal["format", "check_digit"]


class InvalidNationalId(ValueError):
    """Raised when a value is not a valid Iranian national ID."""

    def __init__(self, reason: NationalIdReason) -> None:
        super().__init__(f"invalid national ID: {reason}")
        self.reason: NationalIdReason = reason


class InvalidMobile(ValueError):
    """Raised when a value is not an Iranian mobile number."""


class InvalidPostalCode(ValueError):
    """Raised when a value is not an Iranian postal code."""


def _clean(value: str) -> str:
    return normalize_digits(strip_separators(value))


def _national_id_check_digit(first_nine: str) -> int:
    remainder = sum(int(digit) * (NATIONAL_ID_LENGTH - i) for i, digit in enumerate(first_nine)) % 11
    return remainder if remainder < 2 else 11 - remainder


def normalize_national_id(value: str) -> str:
    """Return the canonical 10 ASCII digits of a national ID typed in any common form."""
    candidate = _clean(value)
    # Repeated digits (0000000000, 1111111111, ...) satisfy the checksum but are never issued; they
    # are what people type to get past a form, so they count as malformed rather than mistyped.
    if len(candidate) != NATIONAL_ID_LENGTH or not is_ascii_digits(candidate) or len(set(candidate)) == 1:
        raise InvalidNationalId("format")
    if int(candidate[-1]) != _national_id_check_digit(candidate[:-1]):
        raise InvalidNationalId("check_digit")
    return candidate


def is_valid_national_id(value: str) -> bool:
    """Return whether value, as typed, is a valid national ID."""
    try:
        normalize_national_id(value)
    except InvalidNationalId:
        return False
    return True


def make_valid_national_id(prefix9: str) -> str:
    """Return prefix9 followed by its national-ID check digit, for tests and seed data."""
    prefix = normalize_digits(prefix9)
    if len(prefix) != NATIONAL_ID_LENGTH - 1 or not is_ascii_digits(prefix):
        raise ValueError("prefix9 must be exactly 9 digits")
    national_id = prefix + str(_national_id_check_digit(prefix))
    if len(set(national_id)) == 1:
        raise ValueError("this prefix only yields a repeated-digit ID, which is never valid")
    return national_id


def normalize_mobile(value: str) -> str:
    """Return an Iranian mobile number in the canonical 09xxxxxxxxx form."""
    match = _MOBILE_PATTERN.fullmatch(_clean(value))
    if match is None:
        raise InvalidMobile("not an Iranian mobile number")
    return "0" + match.group(1)


def normalize_postal_code(value: str) -> str:
    """Return the canonical 10 ASCII digits of an Iranian postal code."""
    candidate = _clean(value)
    if len(candidate) != POSTAL_CODE_LENGTH or not is_ascii_digits(candidate):
        raise InvalidPostalCode("postal code must be 10 digits")
    if _POSTAL_FORBIDDEN_IN_PREFIX.intersection(candidate[:5]):
        raise InvalidPostalCode("the first five digits of a postal code contain no 0 or 2")
    return candidate


def _mask(value: str, keep_head: int, keep_tail: int) -> str:
    # Too short to hide anything meaningful behind the kept digits: hide everything instead.
    if len(value) < keep_head + keep_tail + 4:
        return "*" * len(value)
    hidden = len(value) - keep_head - keep_tail
    return value[:keep_head] + "*" * hidden + value[len(value) - keep_tail :]


def mask_national_id(value: str) -> str:
    """Return a national ID with all but the first 3 and last digit hidden, for logs; never raises."""
    return _mask(_clean(value), keep_head=3, keep_tail=1)


def mask_mobile(value: str) -> str:
    """Return a mobile number with all but the first 4 and last 2 digits hidden, for logs; never raises."""
    try:
        canonical = normalize_mobile(value)
    except InvalidMobile:
        canonical = _clean(value)
    return _mask(canonical, keep_head=4, keep_tail=2)

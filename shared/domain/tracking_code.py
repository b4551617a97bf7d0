"""Tracking codes: short, digits-only, unguessable references citizens can read over the phone."""

# Uniqueness comes from the layout of the plain id (seconds since EPOCH | replica id | sequence), never
# from randomness, so replicas need no coordination beyond distinct replica ids. The keyed Feistel
# permutation is a bijection on [0, 2**44), so it keeps that uniqueness while hiding the time order
# that would let one code be guessed from another. The Verhoeff digit catches the errors people make
# when reading digits aloud or typing them: any single wrong digit, any swapped adjacent pair.

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Final, Literal

from shared.domain.digits import is_ascii_digits, normalize_digits, strip_separators

EPOCH: Final = datetime(2025, 1, 1, tzinfo=UTC)
_EPOCH_SECONDS: Final = int(EPOCH.timestamp())

# 16 replicas × 1,024 codes a second each: one intake replica serves ~600 submissions a second on this kind of
# machine, so a per-replica sequence of 256 (8 bits) capped it below its own throughput; 10 bits do not.
SECONDS_BITS: Final = 30
REPLICA_BITS: Final = 4
SEQUENCE_BITS: Final = 10
ID_BITS: Final = SECONDS_BITS + REPLICA_BITS + SEQUENCE_BITS

MAX_REPLICA_ID: Final = (1 << REPLICA_BITS) - 1
MAX_SEQUENCE: Final = (1 << SEQUENCE_BITS) - 1
_MAX_SECONDS_OFFSET: Final = (1 << SECONDS_BITS) - 1
_ID_SPACE: Final = 1 << ID_BITS

CODE_BODY_LENGTH: Final = 14
CODE_LENGTH: Final = CODE_BODY_LENGTH + 1
DISPLAY_GROUP: Final = 5
MIN_KEY_BYTES: Final = 16

_HALF_BITS: Final = ID_BITS // 2
_HALF_MASK: Final = (1 << _HALF_BITS) - 1
_HALF_BYTES: Final = 3
_ROUNDS: Final = 6
_SHA256_BLOCK: Final = 64

# Guard the layout arithmetic if a width above is ever changed.
assert _ID_SPACE <= 10**CODE_BODY_LENGTH
assert _HALF_BITS <= 8 * _HALF_BYTES
assert CODE_BODY_LENGTH % 2 == 0  # the Verhoeff fast path below works on digit pairs

InvalidReason = Literal["length", "not_digits", "check_digit"]


class InvalidTrackingCode(ValueError):
    """Raised when text typed as a tracking code cannot be one."""

    def __init__(self, reason: InvalidReason) -> None:
        super().__init__(f"invalid tracking code: {reason}")
        self.reason: InvalidReason = reason


class TrackingCodeExhausted(RuntimeError):
    """Raised when a generator cannot issue a code without risking a duplicate; callers answer 503."""


@dataclass(frozen=True, slots=True)
class DecodedCode:
    """The plain id behind a tracking code, for operators and tests."""

    issued_at_second: int
    replica_id: int
    sequence: int


# --- Verhoeff -------------------------------------------------------------------------------------


def _dihedral_product(j: int, k: int) -> int:
    """j·k in the dihedral group D5, its elements numbered 0-4 (rotations) and 5-9 (reflections)."""
    if j < 5:
        return (j + k) % 5 + (0 if k < 5 else 5)
    return (j - k) % 5 + (5 if k < 5 else 0)


def _permutation_powers(first: tuple[int, ...], count: int) -> tuple[tuple[int, ...], ...]:
    """The identity and the next `count - 1` powers of the permutation `first`."""
    rows = [tuple(range(10))]
    while len(rows) < count:
        rows.append(tuple(first[digit] for digit in rows[-1]))
    return tuple(rows)


# Verhoeff's tables, built from their definitions: D5's product, the powers of Verhoeff's permutation of the
# digits (position i uses the i-th power, i mod 8), and each element's inverse in D5.
_VERHOEFF_D: Final = tuple(tuple(_dihedral_product(j, k) for k in range(10)) for j in range(10))
_VERHOEFF_P: Final = _permutation_powers((1, 5, 7, 6, 2, 8, 3, 0, 9, 4), 8)
_VERHOEFF_INV: Final = tuple(next(k for k in range(10) if _VERHOEFF_D[j][k] == 0) for j in range(10))


def _verhoeff_checksum(digits: str, offset: int) -> int:
    if not is_ascii_digits(digits):
        raise ValueError("Verhoeff digits must be ASCII 0-9")
    check = 0
    for position, char in enumerate(reversed(digits), start=offset):
        check = _VERHOEFF_D[check][_VERHOEFF_P[position & 7][ord(char) - 48]]
    return check


def verhoeff_check_digit(digits: str) -> str:
    """Return the Verhoeff check digit to append to a non-empty string of ASCII digits."""
    # Position 0 is reserved for the check digit that is about to be appended.
    return str(_VERHOEFF_INV[_verhoeff_checksum(digits, offset=1)])


def verhoeff_is_valid(digits_with_check: str) -> bool:
    """Return whether a string of ASCII digits ends with its correct Verhoeff check digit."""
    if not is_ascii_digits(digits_with_check):
        return False
    return _verhoeff_checksum(digits_with_check, offset=0) == 0


# --- Keyed permutation ----------------------------------------------------------------------------


class _RoundKeys:
    """Precomputed HMAC-SHA256 states, one per Feistel round, so each round costs two short hashes."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"tracking-code key must be at least {MIN_KEY_BYTES} bytes")
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        # HMAC (RFC 2104) spelt out over hashlib so the padded-key states, with the round byte already
        # absorbed, are computed once; hmac.HMAC.copy() is noticeably slower per call.
        padded = key.ljust(_SHA256_BLOCK, b"\0")
        inner_pad = bytes(b ^ 0x36 for b in padded)
        outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))
        self._inner = tuple(hashlib.sha256(inner_pad + bytes([index])) for index in range(_ROUNDS))
        self._outer = outer

    def round_value(self, index: int, half: int) -> int:
        """Return the Feistel round function F_index(half), a 22-bit value."""
        inner = self._inner[index].copy()
        inner.update(half.to_bytes(_HALF_BYTES, "big"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return int.from_bytes(outer.digest()[:_HALF_BYTES], "big") & _HALF_MASK

    def permute(self, value: int) -> int:
        """Return the keyed image of a 44-bit value."""
        # round_value inlined: this runs six times per code issued and the calls cost about a tenth.
        outer, mask = self._outer, _HALF_MASK
        left, right = value >> _HALF_BITS, value & mask
        for round_inner in self._inner:
            inner = round_inner.copy()
            inner.update(right.to_bytes(_HALF_BYTES, "big"))
            round_outer = outer.copy()
            round_outer.update(inner.digest())
            left, right = right, left ^ (int.from_bytes(round_outer.digest()[:_HALF_BYTES], "big") & mask)
        return (left << _HALF_BITS) | right

    def unpermute(self, value: int) -> int:
        """Return the 44-bit value whose keyed image is value."""
        left, right = value >> _HALF_BITS, value & _HALF_MASK
        round_value = self.round_value
        for index in reversed(range(_ROUNDS)):
            left, right = right ^ round_value(index, left), left
        return (left << _HALF_BITS) | right


@lru_cache(maxsize=8)
def _round_keys(key: bytes) -> _RoundKeys:
    return _RoundKeys(key)


def _check_id_range(value: int) -> None:
    if not 0 <= value < _ID_SPACE:
        raise ValueError(f"value must be in [0, 2**{ID_BITS})")


def permute(value: int, key: bytes) -> int:
    """Map a 44-bit plain id to its code value with a keyed bijection (6-round balanced Feistel)."""
    _check_id_range(value)
    return _round_keys(key).permute(value)


def unpermute(code_value: int, key: bytes) -> int:
    """Invert permute: recover the 44-bit plain id behind a code value."""
    _check_id_range(code_value)
    return _round_keys(key).unpermute(code_value)


# --- Text form ------------------------------------------------------------------------------------


# Verhoeff over the 14-digit body, two digits per step: entry [check * 100 + pair] is the running check
# after the pair at Verhoeff positions 2k+1 and 2k+2 (counted from the right, the check digit being 0).
# Issuing a code is the hot path, and this halves the cost of the digit-by-digit loop.
_BODY_PAIR_STEPS: Final = tuple(
    tuple(
        _VERHOEFF_D[_VERHOEFF_D[check][_VERHOEFF_P[(2 * k + 1) & 7][pair % 10]]][
            _VERHOEFF_P[(2 * k + 2) & 7][pair // 10]
        ]
        for check in range(10)
        for pair in range(100)
    )
    for k in range(CODE_BODY_LENGTH // 2)
)


def _code_text(code_value: int) -> str:
    check, remaining = 0, code_value
    for steps in _BODY_PAIR_STEPS:
        remaining, pair = divmod(remaining, 100)
        check = steps[check * 100 + pair]
    return f"{code_value:0{CODE_BODY_LENGTH}d}{_VERHOEFF_INV[check]}"


def parse_tracking_code(text: str) -> str:
    """Turn what a citizen typed (Persian/Arabic digits, spaces, hyphens) into the canonical 15-digit code."""
    candidate = normalize_digits(strip_separators(text))
    if not is_ascii_digits(candidate):
        raise InvalidTrackingCode("not_digits" if candidate else "length")
    if len(candidate) != CODE_LENGTH:
        raise InvalidTrackingCode("length")
    if not verhoeff_is_valid(candidate):
        raise InvalidTrackingCode("check_digit")
    return candidate


def format_for_display(code: str) -> str:
    """Return a code grouped in fives with hyphens, e.g. "12345-67890-12345", for reading aloud."""
    canonical = parse_tracking_code(code)
    return "-".join(canonical[i : i + DISPLAY_GROUP] for i in range(0, CODE_LENGTH, DISPLAY_GROUP))


def decode(code: str, key: bytes) -> DecodedCode:
    """Recover when, where and in which order a code was issued."""
    code_value = int(parse_tracking_code(code)[:CODE_BODY_LENGTH])
    if code_value >= _ID_SPACE:
        raise ValueError("code value is outside the 44-bit id space; it was never issued")
    plain = unpermute(code_value, key)
    return DecodedCode(
        issued_at_second=_EPOCH_SECONDS + (plain >> (REPLICA_BITS + SEQUENCE_BITS)),
        replica_id=(plain >> SEQUENCE_BITS) & MAX_REPLICA_ID,
        sequence=plain & MAX_SEQUENCE,
    )


# --- Generator ------------------------------------------------------------------------------------


class TrackingCodeGenerator:
    """Issues unique tracking codes for one replica; not thread-safe by design, keep one per event loop."""

    def __init__(
        self,
        *,
        key: bytes,
        replica_id: int,
        clock: Callable[[], float] = time.time,
        max_borrow_seconds: int = 5,
    ) -> None:
        if not 0 <= replica_id <= MAX_REPLICA_ID:
            raise ValueError(f"replica_id must be in 0..{MAX_REPLICA_ID}")
        if max_borrow_seconds < 1:
            # The first logical second is already one ahead of the wall clock (see below).
            raise ValueError("max_borrow_seconds must be at least 1")
        self._keys = _RoundKeys(key)  # validates the key length
        self._replica_bits = replica_id << SEQUENCE_BITS
        self._clock = clock
        self._max_borrow_seconds = max_borrow_seconds
        # Start one second in the future: a replica that crashed and restarted within the same
        # wall-clock second may already have issued codes for that second, and nothing persisted tells
        # us how many, so this incarnation must not reuse it. This holds only if the previous
        # incarnation started in an earlier second and was not borrowing ahead when it died; ruling
        # those out too needs a persisted high-water mark, which pure code cannot keep.
        first_second = int(clock()) + 1
        if first_second < _EPOCH_SECONDS:
            raise ValueError("clock reads before the tracking-code epoch (2025-01-01T00:00:00Z)")
        self._second = first_second
        self._next_sequence = 0

    def next_code(self) -> str:
        """Return a fresh 15-digit code, or raise TrackingCodeExhausted rather than risk a duplicate."""
        now = int(self._clock())
        # The logical second never moves back, so a wall clock stepped backwards (NTP) cannot replay
        # (second, sequence) pairs that were already issued.
        if now > self._second:
            self._second = now
            self._next_sequence = 0
        if self._next_sequence > MAX_SEQUENCE:
            # Borrowing the next second keeps bursts above 1,024/s going; the cap bounds how far ahead of
            # real time we run, which bounds what a restart could collide with. The price: after a large
            # backward clock step only the current logical second's leftovers remain until real time
            # catches up, and refusing (503) is better than issuing a code twice.
            if self._second + 1 > now + self._max_borrow_seconds:
                raise TrackingCodeExhausted("tracking-code capacity for this replica is exhausted; retry shortly")
            self._second += 1
            self._next_sequence = 0
        offset = self._second - _EPOCH_SECONDS
        if offset > _MAX_SECONDS_OFFSET:
            raise TrackingCodeExhausted("tracking-code epoch has run out of seconds")
        plain = (offset << (REPLICA_BITS + SEQUENCE_BITS)) | self._replica_bits | self._next_sequence
        self._next_sequence += 1
        return _code_text(self._keys.permute(plain))

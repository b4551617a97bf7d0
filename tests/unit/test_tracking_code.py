import hmac
import itertools
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.digits import to_persian_digits
from shared.domain.tracking_code import (
    CODE_LENGTH,
    EPOCH,
    MAX_REPLICA_ID,
    MAX_SEQUENCE,
    DecodedCode,
    InvalidTrackingCode,
    TrackingCodeExhausted,
    TrackingCodeGenerator,
    _code_text,
    decode,
    format_for_display,
    parse_tracking_code,
    permute,
    unpermute,
    verhoeff_check_digit,
    verhoeff_is_valid,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
ID_SPACE = 1 << 44
NOW = 1_760_000_000  # 2025-10-09, well inside the 30-bit window after EPOCH

digit_strings = st.text(alphabet="0123456789", min_size=1, max_size=20)
plain_ids = st.integers(min_value=0, max_value=ID_SPACE - 1)


class SteppingClock:
    """A fake wall clock that advances one second every `calls_per_second` reads."""

    def __init__(self, start: float = NOW, calls_per_second: int = 250) -> None:
        self.now = start
        self._calls = 0
        self._calls_per_second = calls_per_second

    def __call__(self) -> float:
        self._calls += 1
        if self._calls % self._calls_per_second == 0:
            self.now += 1
        return self.now


class ScriptedClock:
    """A fake wall clock that returns the given readings in order, then repeats the last one."""

    def __init__(self, readings: list[float]) -> None:
        self._readings: Iterator[float] = iter(readings)
        self._last = readings[0]

    def __call__(self) -> float:
        self._last = next(self._readings, self._last)
        return self._last


def _with_check_digit(body: str) -> str:
    return body + verhoeff_check_digit(body)


# --- Verhoeff -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "check"), [("236", "3"), ("12345", "1"), ("142857", "0"), ("0", "4")])
def test_verhoeff_check_digit_matches_published_examples(body: str, check: str) -> None:
    assert verhoeff_check_digit(body) == check
    assert verhoeff_is_valid(body + check)


@given(digit_strings)
def test_appended_verhoeff_check_digit_validates(body: str) -> None:
    assert verhoeff_is_valid(_with_check_digit(body))


@given(digit_strings)
def test_single_digit_substitution_is_always_detected(body: str) -> None:
    code = _with_check_digit(body)
    for position, original in enumerate(code):
        for replacement in "0123456789":
            if replacement != original:
                assert not verhoeff_is_valid(code[:position] + replacement + code[position + 1 :])


@given(digit_strings)
def test_adjacent_transposition_is_always_detected(body: str) -> None:
    code = _with_check_digit(body)
    for position in range(len(code) - 1):
        first, second = code[position], code[position + 1]
        if first != second:
            swapped = code[:position] + second + first + code[position + 2 :]
            assert not verhoeff_is_valid(swapped)


@pytest.mark.parametrize("value", ["", "12a4", "۱۲۳۴", "12 34"])
def test_verhoeff_rejects_non_ascii_digit_input(value: str) -> None:
    assert not verhoeff_is_valid(value)
    with pytest.raises(ValueError):
        verhoeff_check_digit(value)


@given(plain_ids)
def test_fast_code_text_matches_digit_by_digit_verhoeff(value: int) -> None:
    body = f"{value:014d}"
    assert _code_text(value) == body + verhoeff_check_digit(body)


@pytest.mark.parametrize("position", range(7))
def test_fast_code_text_matches_verhoeff_for_every_digit_pair(position: int) -> None:
    for pair in range(100):
        for low in (0, 7_777_777_777_777 % 100**position, 10**position - 1):
            value = pair * 100**position + low
            body = f"{value:014d}"
            assert _code_text(value) == body + verhoeff_check_digit(body)


# --- Keyed permutation ----------------------------------------------------------------------------


def _reference_permute(value: int, key: bytes) -> int:
    """The Feistel network exactly as specified, on the stdlib hmac module."""
    mask = (1 << 22) - 1
    left, right = value >> 22, value & mask
    for index in range(6):
        digest = hmac.new(key, bytes([index]) + right.to_bytes(3, "big"), "sha256").digest()
        left, right = right, left ^ (int.from_bytes(digest[:3], "big") & mask)
    return (left << 22) | right


@given(plain_ids)
def test_permutation_matches_hmac_sha256_feistel_specification(value: int) -> None:
    assert permute(value, KEY) == _reference_permute(value, KEY)


@given(plain_ids, st.binary(min_size=65, max_size=100))
def test_permutation_with_key_longer_than_a_hash_block_matches_hmac(value: int, key: bytes) -> None:
    assert permute(value, key) == _reference_permute(value, key)


@given(plain_ids)
def test_unpermute_inverts_permute(value: int) -> None:
    code_value = permute(value, KEY)
    assert 0 <= code_value < ID_SPACE
    assert unpermute(code_value, KEY) == value
    assert permute(unpermute(value, KEY), KEY) == value


@given(plain_ids, plain_ids)
def test_distinct_ids_give_distinct_code_values(first: int, second: int) -> None:
    if first != second:
        assert permute(first, KEY) != permute(second, KEY)


def test_a_block_of_consecutive_ids_maps_to_distinct_scattered_values() -> None:
    start = 123_456_789_000
    images = [permute(value, KEY) for value in range(start, start + 20_000)]
    assert len(set(images)) == len(images)
    # Consecutive ids land all over the space rather than next to one another.
    assert max(images) - min(images) > ID_SPACE // 2


@given(plain_ids)
def test_permutation_depends_on_the_key(value: int) -> None:
    assert permute(value, KEY) != permute(value, OTHER_KEY)


@pytest.mark.parametrize("value", [-1, ID_SPACE])
def test_permutation_rejects_values_outside_44_bits(value: int) -> None:
    with pytest.raises(ValueError):
        permute(value, KEY)
    with pytest.raises(ValueError):
        unpermute(value, KEY)


def test_permutation_rejects_short_key() -> None:
    with pytest.raises(ValueError):
        permute(1, b"too short")


# --- Generator ------------------------------------------------------------------------------------


def test_constructor_rejects_replica_id_out_of_range() -> None:
    for replica_id in (-1, 64):
        with pytest.raises(ValueError):
            TrackingCodeGenerator(key=KEY, replica_id=replica_id)


def test_constructor_rejects_key_shorter_than_16_bytes() -> None:
    with pytest.raises(ValueError):
        TrackingCodeGenerator(key=b"x" * 15, replica_id=0)


def test_codes_are_15_ascii_digits_with_valid_check_digit() -> None:
    generator = TrackingCodeGenerator(key=KEY, replica_id=7, clock=SteppingClock())
    for _ in range(1_000):
        code = generator.next_code()
        assert len(code) == CODE_LENGTH
        assert code.isascii() and code.isdigit()
        assert verhoeff_is_valid(code)


def test_one_million_codes_from_one_generator_are_unique() -> None:
    generator = TrackingCodeGenerator(key=KEY, replica_id=0, clock=SteppingClock(calls_per_second=250))
    count = 1_000_000
    codes = {generator.next_code() for _ in range(count)}
    assert len(codes) == count


def test_codes_from_every_replica_on_the_same_clock_never_collide() -> None:
    per_replica = 20_000
    codes: set[str] = set()
    for replica_id in range(MAX_REPLICA_ID + 1):
        generator = TrackingCodeGenerator(key=KEY, replica_id=replica_id, clock=SteppingClock())
        codes.update(generator.next_code() for _ in range(per_replica))
    assert len(codes) == (MAX_REPLICA_ID + 1) * per_replica


def test_decode_recovers_issue_second_replica_and_sequence() -> None:
    generator = TrackingCodeGenerator(key=KEY, replica_id=12, clock=ScriptedClock([NOW]))
    first, second = generator.next_code(), generator.next_code()
    # The first logical second is one past the wall clock at construction.
    assert decode(first, KEY) == DecodedCode(issued_at_second=NOW + 1, replica_id=12, sequence=0)
    assert decode(second, KEY) == DecodedCode(issued_at_second=NOW + 1, replica_id=12, sequence=1)


def test_decode_accepts_display_form_in_persian_digits() -> None:
    code = TrackingCodeGenerator(key=KEY, replica_id=3, clock=ScriptedClock([NOW])).next_code()
    assert decode(to_persian_digits(format_for_display(code)), KEY).replica_id == 3


def test_sequence_resets_when_the_wall_clock_reaches_a_new_second() -> None:
    clock = ScriptedClock([NOW, NOW, NOW + 1, NOW + 2, NOW + 2])
    generator = TrackingCodeGenerator(key=KEY, replica_id=1, clock=clock)
    decoded = [decode(generator.next_code(), KEY) for _ in range(4)]
    assert [(d.issued_at_second, d.sequence) for d in decoded] == [
        (NOW + 1, 0),
        (NOW + 1, 1),
        (NOW + 2, 0),
        (NOW + 2, 1),
    ]


def test_consecutive_codes_are_not_an_arithmetic_sequence() -> None:
    generator = TrackingCodeGenerator(key=KEY, replica_id=5, clock=SteppingClock())
    values = [int(generator.next_code()[:-1]) for _ in range(1_000)]
    differences = {later - earlier for earlier, later in itertools.pairwise(values)}
    assert len(differences) > 990


def test_neighbouring_numbers_of_an_issued_code_are_not_issued_codes() -> None:
    generator = TrackingCodeGenerator(key=KEY, replica_id=9, clock=SteppingClock())
    issued = {generator.next_code() for _ in range(20_000)}
    guesses = set()
    for code in issued:
        value = int(code[:-1])
        for neighbour in (value - 1, value + 1):
            guesses.add(_with_check_digit(f"{neighbour:014d}"))
    assert not issued & guesses


def test_same_id_under_another_key_gives_an_unrelated_code() -> None:
    codes = [
        TrackingCodeGenerator(key=key, replica_id=0, clock=ScriptedClock([NOW])).next_code() for key in (KEY, OTHER_KEY)
    ]
    assert codes[0] != codes[1]


def test_clock_going_backward_never_reissues_a_code() -> None:
    # Construction reads the clock once; then an NTP step back by a minute, forward, and back again.
    readings = [float(NOW)] * 201 + [float(NOW - 60)] * 50 + [float(NOW + 2)] * 100 + [float(NOW + 1)] * 100
    generator = TrackingCodeGenerator(key=KEY, replica_id=2, clock=ScriptedClock(readings))
    codes = [generator.next_code() for _ in range(len(readings) - 1)]
    assert len(set(codes)) == len(codes)
    issued = [(decoded.issued_at_second, decoded.sequence) for decoded in (decode(c, KEY) for c in codes)]
    assert issued == sorted(issued)


def test_clock_far_behind_refuses_to_borrow_instead_of_reissuing() -> None:
    readings = [float(NOW)] * 2 + [float(NOW - 60)] * (MAX_SEQUENCE + 2)
    generator = TrackingCodeGenerator(key=KEY, replica_id=2, clock=ScriptedClock(readings))
    issued = {generator.next_code() for _ in range(MAX_SEQUENCE + 1)}
    assert len(issued) == MAX_SEQUENCE + 1
    with pytest.raises(TrackingCodeExhausted):
        generator.next_code()


def test_burst_borrows_future_seconds_up_to_the_limit_then_raises_exhausted() -> None:
    generator = TrackingCodeGenerator(key=KEY, replica_id=4, clock=ScriptedClock([NOW]), max_borrow_seconds=5)
    # Logical seconds NOW+1 .. NOW+5 are usable while the wall clock stands at NOW.
    codes = [generator.next_code() for _ in range(5 * (MAX_SEQUENCE + 1))]
    assert len(set(codes)) == len(codes)
    assert decode(codes[-1], KEY) == DecodedCode(issued_at_second=NOW + 5, replica_id=4, sequence=MAX_SEQUENCE)
    with pytest.raises(TrackingCodeExhausted):
        generator.next_code()


def test_exhausted_generator_recovers_when_the_wall_clock_catches_up() -> None:
    clock = ScriptedClock([float(NOW)] * (1 + 2 * (MAX_SEQUENCE + 1) + 2) + [float(NOW + 1)])
    generator = TrackingCodeGenerator(key=KEY, replica_id=4, clock=clock, max_borrow_seconds=2)
    issued = {generator.next_code() for _ in range(2 * (MAX_SEQUENCE + 1))}
    with pytest.raises(TrackingCodeExhausted):
        generator.next_code()
    with pytest.raises(TrackingCodeExhausted):
        generator.next_code()
    code = generator.next_code()
    assert code not in issued
    assert decode(code, KEY).issued_at_second == NOW + 3


def test_exhaustion_is_a_runtime_error() -> None:
    assert issubclass(TrackingCodeExhausted, RuntimeError)


def test_restart_within_the_same_second_does_not_reissue_codes_of_that_second() -> None:
    clock = ScriptedClock([float(NOW - 1)] + [float(NOW)] * 10)
    previous = TrackingCodeGenerator(key=KEY, replica_id=8, clock=clock)
    issued_before_crash = {previous.next_code() for _ in range(10)}
    restarted = TrackingCodeGenerator(key=KEY, replica_id=8, clock=ScriptedClock([float(NOW) + 0.9]))
    assert restarted.next_code() not in issued_before_crash


def test_epoch_is_start_of_2025_utc() -> None:
    assert EPOCH.isoformat() == "2025-01-01T00:00:00+00:00"


def test_clock_before_the_epoch_is_rejected() -> None:
    with pytest.raises(ValueError):
        TrackingCodeGenerator(key=KEY, replica_id=0, clock=lambda: EPOCH.timestamp() - 10)


# --- Parsing and display --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def code() -> str:
    return TrackingCodeGenerator(key=KEY, replica_id=11, clock=ScriptedClock([NOW])).next_code()


def test_display_form_groups_digits_in_fives(code: str) -> None:
    shown = format_for_display(code)
    assert shown == f"{code[:5]}-{code[5:10]}-{code[10:]}"


def test_display_form_parses_back_to_the_canonical_code(code: str) -> None:
    assert parse_tracking_code(format_for_display(code)) == code


def test_persian_digits_with_hyphens_and_bidi_marks_parse(code: str) -> None:
    typed = "\u200f" + to_persian_digits(format_for_display(code)) + "\u200c"
    assert parse_tracking_code(typed) == code


def test_arabic_indic_digits_with_spaces_parse(code: str) -> None:
    arabic = code.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    assert parse_tracking_code(f" {arabic[:5]} {arabic[5:10]} {arabic[10:]} ") == code


def refusal(typed: str) -> InvalidTrackingCode:
    """Why parse_tracking_code refuses `typed` (the test fails unless it does)."""
    with pytest.raises(InvalidTrackingCode) as raised:
        parse_tracking_code(typed)
    return raised.value


@given(digit_strings.filter(lambda s: len(s) != CODE_LENGTH))
def test_wrong_length_is_rejected_with_reason_length(digits: str) -> None:
    assert refusal(digits).reason == "length"


@pytest.mark.parametrize("typed", ["", "   ", "-", "\u200c"])
def test_empty_input_is_rejected_with_reason_length(typed: str) -> None:
    assert refusal(typed).reason == "length"


@pytest.mark.parametrize("typed", ["12345-6789O-12345", "abc", "12345678901234x", "١٢٣٤٥/٦٧٨٩٠"])
def test_non_digits_are_rejected_with_reason_not_digits(typed: str) -> None:
    assert refusal(typed).reason == "not_digits"


def test_mistyped_digit_is_rejected_with_reason_check_digit(code: str) -> None:
    mistyped = code[:3] + str((int(code[3]) + 1) % 10) + code[4:]
    error = refusal(mistyped)
    assert error.reason == "check_digit"
    assert isinstance(error, ValueError)


@settings(max_examples=50)
@given(st.integers(min_value=0, max_value=255))
def test_every_issued_code_survives_persian_display_round_trip(calls: int) -> None:
    generator = TrackingCodeGenerator(key=KEY, replica_id=MAX_REPLICA_ID, clock=ScriptedClock([NOW]))
    for _ in range(calls):
        generator.next_code()
    code = generator.next_code()
    assert parse_tracking_code(to_persian_digits(format_for_display(code))) == code

from hypothesis import given
from hypothesis import strategies as st

from shared.domain.digits import is_ascii_digits, normalize_digits, strip_separators, to_persian_digits


def test_persian_digits_become_ascii() -> None:
    assert normalize_digits("۰۱۲۳۴۵۶۷۸۹") == "0123456789"


def test_arabic_indic_digits_become_ascii() -> None:
    assert normalize_digits("٠١٢٣٤٥٦٧٨٩") == "0123456789"


def test_non_digit_text_is_left_untouched() -> None:
    assert normalize_digits("کد رهگیری: ۱۲۳-abc") == "کد رهگیری: 123-abc"


def test_ascii_digits_become_persian() -> None:
    assert to_persian_digits("tracking 0123456789") == "tracking ۰۱۲۳۴۵۶۷۸۹"


@given(st.text(alphabet="0123456789", max_size=30))
def test_persian_round_trip_restores_ascii(digits: str) -> None:
    assert normalize_digits(to_persian_digits(digits)) == digits


@given(st.text())
def test_normalizing_twice_changes_nothing_more(text: str) -> None:
    assert normalize_digits(normalize_digits(text)) == normalize_digits(text)


def test_separators_and_invisible_marks_are_stripped() -> None:
    assert strip_separators("\u200f۱۲۳۴۵ - ۶۷\u200c۸۹\u00a0۰\u200e") == "۱۲۳۴۵۶۷۸۹۰"


def test_only_ascii_digits_count_as_ascii_digits() -> None:
    assert is_ascii_digits("0123456789")
    assert not is_ascii_digits("")
    assert not is_ascii_digits("۱۲۳")
    assert not is_ascii_digits("12³")
    assert not is_ascii_digits("12a")

"""Jalali and Gregorian dates as citizens type them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.intake.domain import parse_iso_date
from shared.domain.digits import to_persian_digits
from shared.domain.jalali import InvalidDate, parse_date, to_jalali_datetime_text, to_jalali_text

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1368/11/11", date(1990, 1, 31)),
        ("1368-11-11", date(1990, 1, 31)),
        ("1403/01/01", date(2024, 3, 20)),  # Nowruz
        ("1404/1/1", date(2025, 3, 21)),
        ("1399/12/30", date(2021, 3, 20)),  # 1399 is a leap year: Esfand has 30 days
        ("1403/12/30", date(2025, 3, 20)),
        ("1200/01/01", date(1821, 3, 21)),
        ("1499/12/29", date(2121, 3, 20)),
    ],
)
def test_jalali_dates_become_gregorian(text: str, expected: date) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", ["1990-01-31", "2024-02-29", "1500-01-01", "2000/01/01"])
def test_gregorian_dates_pass_through(text: str) -> None:
    assert parse_date(text) == date(*map(int, text.replace("/", "-").split("-")))


def test_persian_and_arabic_digits_and_surrounding_spaces_are_accepted() -> None:
    assert parse_date(f"  {to_persian_digits('1368/11/11')}\t") == date(1990, 1, 31)
    assert parse_date("1368/11/11".translate(ARABIC_INDIC)) == date(1990, 1, 31)
    assert parse_date(to_persian_digits("1990-01-31")) == date(1990, 1, 31)


def refusal(text: str) -> InvalidDate:
    """Why parse_date refuses `text` (the test fails unless it does)."""
    with pytest.raises(InvalidDate) as raised:
        parse_date(text)
    return raised.value


@pytest.mark.parametrize("text", ["1400/12/30", "1404/12/30", "1368/13/01", "1368/00/10", "1368/07/31", "1368/01/32"])
def test_impossible_jalali_dates_are_out_of_range(text: str) -> None:
    assert refusal(text).reason == "out_of_range"


@pytest.mark.parametrize("text", ["1990-02-29", "2023-02-29", "1990-13-01", "0000-01-01"])
def test_impossible_gregorian_dates_are_out_of_range(text: str) -> None:
    assert refusal(text).reason == "out_of_range"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "not a date",
        "31/01/1990",
        "11/11/1368",
        "1368/11-11",
        "68/11/11",
        "1368/11/111",
        "13681111",
        "1368.11.11",
    ],
)
def test_garbage_is_refused_as_format(text: str) -> None:
    error = refusal(text)
    assert error.reason == "format"
    assert isinstance(error, ValueError)


def test_to_jalali_text() -> None:
    assert to_jalali_text(date(1990, 1, 31)) == "1368/11/11"
    assert to_jalali_text(date(2021, 3, 20)) == "1399/12/30"
    assert to_jalali_text(date(2021, 3, 21)) == "1400/01/01"


@given(st.dates(min_value=date(1821, 3, 21), max_value=date(2121, 3, 20)))
def test_jalali_text_round_trips(day: date) -> None:
    assert parse_date(to_jalali_text(day)) == day
    assert parse_date(to_persian_digits(to_jalali_text(day))) == day


def test_consecutive_days_stay_consecutive_across_esfand_and_nowruz() -> None:
    start = date(2021, 3, 15)
    texts = [to_jalali_text(start + timedelta(days=i)) for i in range(10)]
    assert texts[5:7] == ["1399/12/30", "1400/01/01"]
    assert [parse_date(text) for text in texts] == [start + timedelta(days=i) for i in range(10)]


def test_intake_parse_iso_date_accepts_jalali_and_returns_none_for_nonsense() -> None:
    assert parse_iso_date("۱۳۶۸/۱۱/۱۱") == date(1990, 1, 31)
    assert parse_iso_date("1990-01-31") == date(1990, 1, 31)
    assert parse_iso_date("1400/12/30") is None
    assert parse_iso_date("garbage") is None


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        # 13:00 UTC is 16:30 in Tehran (UTC+03:30, no daylight saving time since 2022).
        (datetime(2026, 11, 28, 13, 0, tzinfo=UTC), "1405/09/07 16:30"),
        # Past midnight in Tehran is already the next Jalali day; Nowruz 1405 began on 2026-03-21.
        (datetime(2026, 3, 20, 21, 0, tzinfo=UTC), "1405/01/01 00:30"),
        # Before 2022 Iran kept summer time (UTC+04:30): the zone database knows.
        (datetime(2021, 7, 1, 12, 0, tzinfo=UTC), "1400/04/10 16:30"),
    ],
)
def test_moments_read_on_tehrans_wall_clock_in_the_jalali_calendar(moment: datetime, expected: str) -> None:
    assert to_jalali_datetime_text(moment) == expected


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        to_jalali_datetime_text(datetime(2026, 11, 28, 13, 0))

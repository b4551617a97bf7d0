"""Dates as Iranians type them: Jalali (Solar Hijri) or ISO Gregorian, in Persian, Arabic or Latin digits."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Final, Literal
from zoneinfo import ZoneInfo

import jdatetime

from shared.domain.digits import normalize_digits

# Official time in Iran (UTC+03:30; the zone database also knows the daylight saving time used until 2022).
TEHRAN: Final = ZoneInfo("Asia/Tehran")

# Year 1200..1499 is Jalali: those years cover Gregorian 1821..2121, so any plausible Gregorian date
# written with a four-digit year is 1500 or later and the two calendars never overlap in practice.
JALALI_YEARS: Final = range(1200, 1500)

# [0-9] rather than \d: \d would also match other scripts' digits that normalize_digits does not map.
_DATE: Final = re.compile(r"([0-9]{4})([-/])([0-9]{1,2})\2([0-9]{1,2})")

InvalidDateReason = Literal["format", "out_of_range"]


class InvalidDate(ValueError):
    """Raised when a text is not a real date in either calendar."""

    def __init__(self, reason: InvalidDateReason) -> None:
        super().__init__(f"invalid date: {reason}")
        self.reason: InvalidDateReason = reason


def parse_date(text: str) -> date:
    """The Gregorian date of a year-first date: Jalali (1368/11/11, 1368-11-11) or Gregorian (1990-01-31)."""
    match = _DATE.fullmatch(normalize_digits(text.strip()))
    if match is None:
        raise InvalidDate("format")
    year, month, day = int(match[1]), int(match[3]), int(match[4])
    try:
        if year in JALALI_YEARS:
            gregorian: date = jdatetime.date(year, month, day).togregorian()
            return gregorian
        return date(year, month, day)
    except ValueError as error:  # month 13, 30 Esfand of a common year, 30 February...
        raise InvalidDate("out_of_range") from error


def to_jalali_text(d: date) -> str:
    """The Jalali date as Iranians write it, e.g. 1368/11/11 (ASCII digits; see to_persian_digits)."""
    jalali = jdatetime.date.fromgregorian(date=d)
    return f"{int(jalali.year):04d}/{int(jalali.month):02d}/{int(jalali.day):02d}"


def to_jalali_datetime_text(moment: datetime) -> str:
    """A moment as Tehran's wall clock in the Jalali calendar, e.g. 1405/09/07 16:30 (ASCII digits)."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no place in time: give it a zone")
    local = moment.astimezone(TEHRAN)
    return f"{to_jalali_text(local.date())} {local.hour:02d}:{local.minute:02d}"

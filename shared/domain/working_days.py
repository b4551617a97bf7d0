"""Working days for SLAs: Iran's weekend and official holidays (tracking's fold adds the pauses on the citizen).

Every date here is a day on Tehran's wall clock (see `tehran_day`): a request submitted at 00:30 Tehran time
on a Saturday was submitted on Saturday, although it was still Friday in UTC. As in Iranian administrative
practice, the day a request is submitted does not count: a 3-working-day service submitted on Saturday is
due by Tuesday.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any, Final

import jdatetime
import yaml

from shared.domain.jalali import TEHRAN

# Python's weekday numbers (Monday is 0), by the English names the holidays file uses.
WEEKDAYS: Final = {
    name: number
    for number, name in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))
}
HOLIDAYS_RESOURCE: Final = "data/holidays.yaml"

_JALALI_DATE_PARTS: Final = 3
_DAYS_IN_WEEK: Final = 7


class CalendarError(ValueError):
    """The holidays file is missing or malformed; the message says where."""


@dataclass(frozen=True)
class WorkingCalendar:
    """The days offices close: a weekly weekend and dated holidays (Gregorian dates)."""

    weekend: frozenset[int]
    holidays: frozenset[date] = frozenset()
    # Jalali years whose holidays are all listed; outside them only the weekend is known (see `covers`).
    covered_years: frozenset[int] = frozenset()
    # Holidays on a weekday, as ordinals in order: what `working_days_between` counts with bisect.
    _weekday_holidays: tuple[int, ...] = field(init=False, repr=False, compare=False)
    # How many days outside the weekend the first 0..7 days of a Monday-first week hold.
    _partial_week: tuple[int, ...] = field(init=False, repr=False, compare=False)
    # The first and last Gregorian day of each covered year.
    _covered_spans: tuple[tuple[date, date], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.weekend <= set(range(_DAYS_IN_WEEK)):
            raise ValueError(f"weekend days are weekday numbers 0 (Monday) to 6, not {sorted(self.weekend)}")
        # Counting working days would never end in a week without one.
        if len(self.weekend) == _DAYS_IN_WEEK:
            raise ValueError("a weekend of all seven days leaves no working day")
        weekday_holidays = sorted(day.toordinal() for day in self.holidays if day.weekday() not in self.weekend)
        partial = [0]
        for weekday in range(_DAYS_IN_WEEK):
            partial.append(partial[-1] + (weekday not in self.weekend))
        spans = [
            (jdatetime.date(year, 1, 1).togregorian(), jdatetime.date(year + 1, 1, 1).togregorian() - timedelta(days=1))
            for year in sorted(self.covered_years)
        ]
        object.__setattr__(self, "_weekday_holidays", tuple(weekday_holidays))
        object.__setattr__(self, "_partial_week", tuple(partial))
        object.__setattr__(self, "_covered_spans", tuple(spans))

    def is_working_day(self, day: date) -> bool:
        """Whether offices are open that day: neither weekend nor holiday."""
        return day.weekday() not in self.weekend and day not in self.holidays

    def covers(self, day: date) -> bool:
        """Whether the holidays of the day's Jalali year are listed, so counts around it can be trusted."""
        return any(first <= day <= last for first, last in self._covered_spans)

    def working_days_between(self, first_day: date, last_day: date) -> int:
        """How many working days lie after first_day up to and including last_day: (first_day, last_day]."""
        if last_day < first_day:
            raise ValueError(f"the interval ends ({last_day}) before it starts ({first_day})")
        return self._count(first_day.toordinal(), last_day.toordinal())

    def add_working_days(self, start_day: date, n: int) -> date:
        """The nth working day strictly after start_day (start_day itself for n = 0).

        Found by bisection on `working_days_between`, so any n costs the same: no walk day by day.
        """
        if n < 0:
            raise ValueError(f"cannot add a negative number of working days ({n})")
        if n == 0:
            return start_day
        start = start_day.toordinal()
        low, high = start, date.max.toordinal()
        if self._count(start, high) < n:
            raise ValueError(f"{n} working days after {start_day} is beyond the last representable date")
        # Invariant: fewer than n working days in (start, low], at least n in (start, high].
        while high - low > 1:
            middle = (low + high) // 2
            if self._count(start, middle) < n:
                low = middle
            else:
                high = middle
        return date.fromordinal(high)

    def _count(self, first: int, last: int) -> int:
        """Working days among the ordinals (first, last], first <= last."""
        weekdays = self._weekdays_up_to(last) - self._weekdays_up_to(first)
        holidays = bisect.bisect_right(self._weekday_holidays, last) - bisect.bisect_right(
            self._weekday_holidays, first
        )
        return weekdays - holidays

    def _weekdays_up_to(self, ordinal: int) -> int:
        """Days outside the weekend among ordinals 1..ordinal; ordinal 1 (0001-01-01) is a Monday."""
        weeks, rest = divmod(ordinal, _DAYS_IN_WEEK)
        return weeks * self._partial_week[_DAYS_IN_WEEK] + self._partial_week[rest]


def tehran_day(moment: datetime) -> date:
    """The day a moment falls on by Tehran's wall clock, the day every SLA date here means."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no place in time: give it a zone")
    return moment.astimezone(TEHRAN).date()


def parse_calendar(data: Any, shown_as: str = "holidays.yaml") -> WorkingCalendar:
    """A calendar from the parsed holidays file: `weekend:` day names and `holidays:` by Jalali year."""
    if not isinstance(data, dict):
        raise CalendarError(f"{shown_as}: expected a mapping with `weekend:` and `holidays:`")
    weekend_names = data.get("weekend")
    if not isinstance(weekend_names, list) or not all(isinstance(name, str) for name in weekend_names):
        raise CalendarError(f"{shown_as}: `weekend:` must be a list of day names such as [thursday, friday]")
    unknown = sorted(set(weekend_names) - set(WEEKDAYS))
    if unknown:
        raise CalendarError(f"{shown_as}: unknown weekend days {unknown}; use {list(WEEKDAYS)}")
    years = data.get("holidays")
    if not isinstance(years, dict) or not years:
        raise CalendarError(f"{shown_as}: `holidays:` must map Jalali years to lists of holidays")
    holidays: set[date] = set()
    for year, entries in years.items():
        if not isinstance(year, int) or not isinstance(entries, list) or not entries:
            raise CalendarError(f"{shown_as}: holidays of {year!r}: expected a Jalali year and a list of holidays")
        for index, entry in enumerate(entries):
            where = f"{shown_as}: holidays of {year}, #{index + 1}"
            day = _holiday_date(entry, year, where)
            if day in holidays:
                raise CalendarError(f"{where}: {entry['date']} is listed twice; join the names in one entry")
            holidays.add(day)
    try:
        return WorkingCalendar(
            weekend=frozenset(WEEKDAYS[name] for name in weekend_names),
            holidays=frozenset(holidays),
            covered_years=frozenset(years),
        )
    except ValueError as error:
        raise CalendarError(f"{shown_as}: {error}") from error


def _holiday_date(entry: Any, year: int, where: str) -> date:
    """The Gregorian date of one holiday entry, checked to be a real day of its year with both names."""
    if not isinstance(entry, dict) or set(entry) - {"date", "fa", "en", "hijri"}:
        raise CalendarError(f"{where}: expected only the keys date, fa, en and hijri")
    for name in ("fa", "en"):
        if not isinstance(entry.get(name), str) or not entry[name].strip():
            raise CalendarError(f"{where}: `{name}:` must name the occasion")
    if not isinstance(entry.get("hijri", ""), str):
        raise CalendarError(f"{where}: `hijri:` is the Hijri date as text, e.g. 1447/01/10")
    text = entry.get("date")
    parts = text.split("/") if isinstance(text, str) else []
    # YAML reads an unquoted 1404-01-01 as a Gregorian date object, so only the slashed string is accepted.
    if len(parts) != _JALALI_DATE_PARTS or not all(part.isascii() and part.isdigit() for part in parts):
        raise CalendarError(f"{where}: `date:` must be a Jalali date written YYYY/MM/DD, not {text!r}")
    jalali_year, month, day = map(int, parts)
    if jalali_year != year:
        raise CalendarError(f"{where}: {text} is not in {year}")
    try:
        gregorian: date = jdatetime.date(jalali_year, month, day).togregorian()
    except ValueError as error:
        raise CalendarError(f"{where}: {text} is not a real Jalali date") from error
    return gregorian


@cache
def load_calendar() -> WorkingCalendar:
    """The calendar in the packaged holidays file, read once per process."""
    resource = resources.files("shared").joinpath(HOLIDAYS_RESOURCE)
    try:
        text = resource.read_text(encoding="utf-8")
    except OSError as error:
        raise CalendarError(f"{HOLIDAYS_RESOURCE}: cannot be read ({error.strerror or error})") from error
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CalendarError(f"{HOLIDAYS_RESOURCE}: not valid YAML ({error})") from error
    return parse_calendar(data, HOLIDAYS_RESOURCE)

"""SLA working days: Iran's weekend and holidays, due dates that stop while the citizen acts, the holidays file."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone
from importlib import resources
from typing import Any

import jdatetime
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.working_days import (
    HOLIDAYS_RESOURCE,
    WEEKDAYS,
    CalendarError,
    WorkingCalendar,
    load_calendar,
    parse_calendar,
    tehran_day,
)

THU, FRI = WEEKDAYS["thursday"], WEEKDAYS["friday"]
IRAN = load_calendar()
# A calendar with no holidays, for the weekend rules alone.
WEEKEND_ONLY = WorkingCalendar(weekend=frozenset({THU, FRI}))

# Around Nowruz 1405: Esfand 29 1404 (oil nationalisation day) is Friday 2026-03-20, Nowruz 1-4 Farvardin 1405
# is Saturday 2026-03-21 to Tuesday 2026-03-24; Thursday and Friday 2026-03-26/27 are the weekend.
ESFAND_25_1404 = date(2026, 3, 16)  # Monday
NOWRUZ_1405 = date(2026, 3, 21)  # Saturday
FIRST_WORKING_DAY_1405 = date(2026, 3, 25)  # Wednesday 5 Farvardin


def raw_holidays_file() -> Any:
    return yaml.safe_load(resources.files("shared").joinpath(HOLIDAYS_RESOURCE).read_text(encoding="utf-8"))


def jalali(text: str) -> date:
    year, month, day = map(int, text.split("/"))
    gregorian: date = jdatetime.date(year, month, day).togregorian()
    return gregorian


# --- the packaged holidays file ---------------------------------------------------------------------------------


def test_the_file_covers_1404_to_1406_with_a_thursday_friday_weekend() -> None:
    assert IRAN.weekend == {THU, FRI}
    assert IRAN.covered_years == {1404, 1405, 1406}
    assert IRAN.covers(date(2025, 3, 21))  # 1 Farvardin 1404
    assert IRAN.covers(date(2028, 3, 19))  # 29 Esfand 1406
    assert not IRAN.covers(date(2025, 3, 20))  # 30 Esfand 1403
    assert not IRAN.covers(date(2028, 3, 20))  # 1 Farvardin 1407
    assert not IRAN.covers(date.min)
    assert not IRAN.covers(date.max)


def test_the_file_lists_each_date_once_and_every_year_has_at_least_25_holidays() -> None:
    years = raw_holidays_file()["holidays"]
    dates = [entry["date"] for entries in years.values() for entry in entries]
    assert [text for text, count in Counter(dates).items() if count > 1] == []
    for year, entries in years.items():
        assert len(entries) >= 25, year
        assert all(entry["date"].startswith(f"{year}/") for entry in entries)
    assert len(IRAN.holidays) == len(dates)


@pytest.mark.parametrize("year", [1404, 1405, 1406])
@pytest.mark.parametrize(
    "month_day", ["01/01", "01/02", "01/03", "01/04", "01/12", "01/13", "03/14", "03/15", "11/22", "12/29"]
)
def test_every_solar_holiday_of_every_year_is_listed(year: int, month_day: str) -> None:
    assert jalali(f"{year}/{month_day}") in IRAN.holidays


def test_every_lunar_occasion_is_listed_once_a_year_with_both_names() -> None:
    years = raw_holidays_file()["holidays"]
    for year, entries in years.items():
        assert all(entry["fa"].strip() and entry["en"].strip() for entry in entries)
        lunar = Counter(entry["hijri"].split("/", 1)[1] for entry in entries if "hijri" in entry)
        # Ramadan 21 and Shawwal 1-2 can fall twice in one solar year (1404 has both those of 1446 and 1447).
        assert {"01/09", "01/10", "02/20", "02/28", "03/08", "03/17", "06/03", "07/13", "07/27"} <= set(lunar), year
        assert {"08/15", "09/21", "10/01", "10/02", "10/25", "12/10", "12/18"} <= set(lunar), year
        assert any(day in lunar for day in ("02/29", "02/30")), year  # Imam Reza, the last day of Safar


# --- working days -------------------------------------------------------------------------------------------------


def test_thursday_and_friday_are_the_weekend() -> None:
    week = [date(2026, 5, 2) + timedelta(days=offset) for offset in range(7)]  # Saturday 12 Ordibehesht 1405
    assert [WEEKEND_ONLY.is_working_day(day) for day in week] == [True, True, True, True, True, False, False]


def test_the_day_of_submission_does_not_count() -> None:
    saturday = date(2026, 5, 2)
    assert WEEKEND_ONLY.add_working_days(saturday, 1) == date(2026, 5, 3)
    assert WEEKEND_ONLY.add_working_days(saturday, 3) == date(2026, 5, 5)  # Tuesday
    assert WEEKEND_ONLY.add_working_days(saturday, 0) == saturday


def test_the_weekend_is_skipped() -> None:
    tuesday = date(2026, 5, 5)
    assert WEEKEND_ONLY.add_working_days(tuesday, 1) == date(2026, 5, 6)  # Wednesday
    assert WEEKEND_ONLY.add_working_days(tuesday, 2) == date(2026, 5, 9)  # Saturday, past Thursday and Friday
    assert WEEKEND_ONLY.add_working_days(date(2026, 5, 8), 1) == date(2026, 5, 9)  # submitted on a Friday
    assert WEEKEND_ONLY.working_days_between(tuesday, date(2026, 5, 9)) == 2
    assert WEEKEND_ONLY.working_days_between(tuesday, tuesday) == 0


def test_nowruz_1405_is_closed() -> None:
    assert jalali("1405/01/01") == NOWRUZ_1405
    closed = [NOWRUZ_1405 - timedelta(days=1), *(NOWRUZ_1405 + timedelta(days=offset) for offset in range(4))]
    assert not any(IRAN.is_working_day(day) for day in closed)
    assert IRAN.is_working_day(FIRST_WORKING_DAY_1405)
    assert IRAN.is_working_day(date(2026, 3, 18))  # Wednesday 27 Esfand 1404


def test_a_request_before_nowruz_waits_for_the_new_year() -> None:
    wednesday = date(2026, 3, 18)  # 27 Esfand 1404: then the weekend, Esfand 29 and Nowruz
    assert IRAN.add_working_days(wednesday, 1) == FIRST_WORKING_DAY_1405
    assert IRAN.add_working_days(wednesday, 2) == date(2026, 3, 28)  # Saturday, past the weekend again
    assert IRAN.working_days_between(wednesday, date(2026, 3, 24)) == 0
    # Submitted Monday 25 Esfand with 5 working days: Tue, Wed, six closed days, Wed, the weekend, Sat and Sun.
    assert IRAN.add_working_days(ESFAND_25_1404, 5) == date(2026, 3, 29)
    assert WEEKEND_ONLY.add_working_days(ESFAND_25_1404, 5) == date(2026, 3, 23)


def test_a_pause_spanning_nowruz_holds_only_its_working_days() -> None:
    # Paused on Tuesday 26 Esfand 1404 for a correction, resumed on Saturday 8 Farvardin 1405: the pause held
    # Wednesday 27 Esfand, Wednesday 5 Farvardin and Saturday 8 Farvardin: three working days in eleven days.
    # tracking's fold moves the due date by exactly that (tests/unit/test_tracking_sla.py).
    assert IRAN.working_days_between(date(2026, 3, 17), date(2026, 3, 28)) == 3
    # Mon, Tue, then 12 and 13 Farvardin (Wednesday and Thursday) and Friday are closed: Saturday 15 Farvardin.
    assert IRAN.add_working_days(ESFAND_25_1404, 5 + 3) == date(2026, 4, 4)


def test_nonsense_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        WEEKEND_ONLY.add_working_days(date(2026, 5, 2), -1)
    with pytest.raises(ValueError, match="before it starts"):
        WEEKEND_ONLY.working_days_between(date(2026, 5, 2), date(2026, 5, 1))
    with pytest.raises(ValueError, match="beyond the last representable date"):
        WEEKEND_ONLY.add_working_days(date.max - timedelta(days=3), 10)
    assert WEEKEND_ONLY.add_working_days(date.min, 10**6) > date.min  # a huge count is answered at once


@pytest.mark.parametrize("weekend", [frozenset(range(7)), frozenset({7}), frozenset({-1})])
def test_impossible_weekends_are_refused(weekend: frozenset[int]) -> None:
    with pytest.raises(ValueError, match="weekend"):
        WorkingCalendar(weekend=weekend)


def test_tehran_day_is_the_day_on_tehrans_wall_clock() -> None:
    # 21:00 UTC on Friday 2026-03-20 is 00:30 on Saturday 1 Farvardin 1405 in Tehran (UTC+03:30).
    assert tehran_day(datetime(2026, 3, 20, 21, 0, tzinfo=UTC)) == NOWRUZ_1405
    assert tehran_day(datetime(2026, 3, 20, 20, 29, tzinfo=UTC)) == date(2026, 3, 20)
    assert tehran_day(datetime(2026, 3, 21, 0, 30, tzinfo=timezone(timedelta(hours=3, minutes=30)))) == NOWRUZ_1405
    with pytest.raises(ValueError, match="naive"):
        tehran_day(datetime(2026, 3, 21, 0, 30))


# --- parsing the holidays file --------------------------------------------------------------------------------------


def holidays_file(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "weekend": ["friday"],
        "holidays": {1405: [{"date": "1405/01/01", "fa": "عید نوروز", "en": "Nowruz"}]},
    }
    data.update(changes)
    return data


def test_a_small_file_is_parsed() -> None:
    calendar = parse_calendar(holidays_file())
    assert calendar == WorkingCalendar(
        weekend=frozenset({FRI}), holidays=frozenset({NOWRUZ_1405}), covered_years=frozenset({1405})
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "expected a mapping"),
        (holidays_file(weekend="friday"), "must be a list of day names"),
        (holidays_file(weekend=["jomeh"]), "unknown weekend days"),
        (holidays_file(weekend=list(WEEKDAYS)), "no working day"),
        (holidays_file(holidays={}), "must map Jalali years"),
        (holidays_file(holidays={1405: []}), "expected a Jalali year and a list"),
        (holidays_file(holidays={1405: [{"date": "1405/01/01", "fa": "نوروز"}]}), "`en:` must name"),
        (holidays_file(holidays={1405: [{"date": date(1405, 1, 1), "fa": "x", "en": "x"}]}), "YYYY/MM/DD"),
        (holidays_file(holidays={1405: [{"date": "1405-01-01", "fa": "x", "en": "x"}]}), "YYYY/MM/DD"),
        (holidays_file(holidays={1405: [{"date": "1405/12/30", "fa": "x", "en": "x"}]}), "not a real Jalali date"),
        (holidays_file(holidays={1405: [{"date": "1406/01/01", "fa": "x", "en": "x"}]}), "is not in 1405"),
        (holidays_file(holidays={1405: [{"date": "1405/01/01", "fa": "x", "en": "x", "note": "?"}]}), "only the keys"),
        (
            holidays_file(holidays={1405: [{"date": "1405/01/01", "fa": "x", "en": "x"}] * 2}),
            "listed twice",
        ),
    ],
)
def test_a_malformed_file_is_refused_naming_the_fault(data: Any, message: str) -> None:
    with pytest.raises(CalendarError, match=message):
        parse_calendar(data)


# --- properties -------------------------------------------------------------------------------------------------

days = st.dates(min_value=date(2024, 1, 1), max_value=date(2029, 12, 31))
counts = st.integers(min_value=0, max_value=400)


@st.composite
def calendars(draw: st.DrawFn) -> WorkingCalendar:
    """Iran's calendar, or any weekend (short of the whole week) with any holidays."""
    if draw(st.booleans()):
        return IRAN
    weekend = draw(st.frozensets(st.integers(min_value=0, max_value=6), max_size=6))
    return WorkingCalendar(weekend=weekend, holidays=draw(st.frozensets(days, max_size=120)))


@given(calendars(), days, st.integers(min_value=1, max_value=400))
def test_add_working_days_lands_on_a_working_day(calendar: WorkingCalendar, start: date, n: int) -> None:
    assert calendar.is_working_day(calendar.add_working_days(start, n))


@given(calendars(), days, counts)
def test_add_working_days_is_strictly_monotone_in_n(calendar: WorkingCalendar, start: date, n: int) -> None:
    assert calendar.add_working_days(start, n) < calendar.add_working_days(start, n + 1)


@given(calendars(), days, counts)
def test_working_days_between_inverts_add_working_days(calendar: WorkingCalendar, start: date, n: int) -> None:
    assert calendar.working_days_between(start, calendar.add_working_days(start, n)) == n


@given(calendars(), days, st.integers(min_value=0, max_value=60))
def test_the_counts_agree_with_walking_day_by_day(calendar: WorkingCalendar, start: date, length: int) -> None:
    walked = [start + timedelta(days=offset) for offset in range(1, length + 1)]
    working = [day for day in walked if calendar.is_working_day(day)]
    assert calendar.working_days_between(start, start + timedelta(days=length)) == len(working)
    for n, day in enumerate(working, start=1):
        assert calendar.add_working_days(start, n) == day

"""The calendar's pure parts: working weekdays, closed and opened dates, the dates file."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from activities.calendar_days import special_dates
from mailer.core.errors import ConfigError
from mailer.core.settings import load_settings
from mailer.core.working_days import WorkingDays, parse_dates_file, parse_working_days
from workflows.working_hours import WorkingHours, is_working_time, next_working_start


def test_working_days_are_read_as_operators_write_them() -> None:
    assert parse_working_days("mon-fri") == (0, 1, 2, 3, 4)
    assert parse_working_days("Mon-Fri, sun") == (0, 1, 2, 3, 4, 6)
    assert parse_working_days("sun-tue") == (0, 1, 6)  # a range may wrap
    assert parse_working_days("mon-sun") == tuple(range(7))
    with pytest.raises(ValueError, match="'fr' is not a day"):
        parse_working_days("mon-fri,fr")


def test_the_dates_file_names_file_and_line_when_wrong() -> None:
    closed, opened = parse_dates_file("2027-01-11\n\n2027-02-20 working  # transfer\n", "d.txt")
    assert (closed, opened) == (["2027-01-11"], ["2027-02-20"])
    with pytest.raises(ValueError, match=r"^d\.txt:2: '2027-13-01' is not a YYYY-MM-DD date$"):
        parse_dates_file("# ok\n2027-13-01\n", "d.txt")
    with pytest.raises(ValueError, match=r"^d\.txt:1: expected 'YYYY-MM-DD' or"):
        parse_dates_file("2027-01-11 holiday\n", "d.txt")


DATABASE_URL = "postgresql://mailer@127.0.0.1/unused"
MON_FRI = WorkingDays.of(range(5), closed=["2027-01-11"], opened=["2027-01-16"])
HOURS = WorkingHours("Europe/Moscow", 9, 18, MON_FRI)


def test_an_opened_date_works_whatever_its_weekday_and_a_closed_one_never() -> None:
    assert MON_FRI.works(date(2027, 1, 16))  # a Saturday, opened
    assert not MON_FRI.works(date(2027, 1, 11))  # a Monday, closed
    assert not MON_FRI.works(date(2027, 1, 17))  # a Sunday
    assert MON_FRI.works(date(2027, 1, 12))


def test_outside_hours_sleeps_to_the_next_working_days_start() -> None:
    friday_evening = datetime(2027, 1, 8, 16, 0, tzinfo=UTC)  # 19:00 in Moscow
    # Saturday 9, Sunday 10 off; Monday 11 closed; Tuesday 12 at 09:00 MSK.
    assert next_working_start(friday_evening, HOURS) == datetime(2027, 1, 12, 6, 0, tzinfo=UTC)
    saturday_morning = datetime(2027, 1, 16, 5, 0, tzinfo=UTC)  # 08:00 on the opened Saturday
    assert next_working_start(saturday_morning, HOURS) == datetime(2027, 1, 16, 6, 0, tzinfo=UTC)
    assert not is_working_time(datetime(2027, 1, 11, 9, 0, tzinfo=UTC), HOURS)
    assert is_working_time(datetime(2027, 1, 16, 9, 0, tzinfo=UTC), HOURS)


def test_a_dst_zone_opens_at_its_local_start_across_the_change() -> None:
    berlin = WorkingHours("Europe/Berlin", 9, 18, WorkingDays.of(range(5)))
    friday = datetime(2027, 3, 26, 17, 0, tzinfo=UTC)  # 18:00 CET; clocks go forward Sunday
    # Monday 29 March 09:00 CEST is 07:00 UTC.
    assert next_working_start(friday, berlin) == datetime(2027, 3, 29, 7, 0, tzinfo=UTC)


def test_calendar_settings_are_one_line_naming_the_variable_file_and_line(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "dates.txt"
    bad.write_text("2027-01-11\n2027-02-30 working\n")
    with pytest.raises(ConfigError, match=rf"^MAILER_HOLIDAYS_FILE: {bad}:2: '2027-02-30' is not"):
        load_settings(database_url=DATABASE_URL, holidays_file=bad)
    with pytest.raises(ConfigError, match=r"^MAILER_WORKING_DAYS: 'mon-fry' is not a day"):
        load_settings(database_url=DATABASE_URL, working_days="mon-fry")
    with pytest.raises(ConfigError, match=r"^MAILER_HOLIDAYS: 'ZZ' is not a country"):
        load_settings(database_url=DATABASE_URL, holidays="ZZ")
    assert load_settings(database_url=DATABASE_URL, holidays="ru").holidays == "RU"


def test_a_dates_file_gone_after_the_start_leaves_the_countrys_dates(tmp_path: Path) -> None:
    dates = tmp_path / "dates.txt"
    dates.write_text("2026-12-28\n2026-12-26 working\n")
    today = date(2026, 12, 5)
    closed, opened = special_dates("RU", dates, today)
    assert "2026-12-28" in closed and "2026-12-26" in opened and "2027-01-01" in closed
    dates.unlink()
    closed, opened = special_dates("RU", dates, today)
    assert "2026-12-28" not in closed and "2027-01-01" in closed

"""Reading and checking a scheduled start's time (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from mailer.core.start_times import parse_start_at, start_time_problem

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def test_a_time_without_an_offset_is_read_in_the_configured_zone() -> None:
    at = parse_start_at("2026-12-07T09:00", "Asia/Vladivostok")
    assert at == datetime(2026, 12, 6, 23, 0, tzinfo=UTC)
    assert parse_start_at(" 2026-12-07T09:00+03:00 ", "Asia/Vladivostok") == datetime(
        2026, 12, 7, 6, 0, tzinfo=UTC
    )


def test_a_time_that_is_not_iso_is_one_line_naming_it() -> None:
    with pytest.raises(ValueError, match="'next monday' is not an ISO date and time"):
        parse_start_at("next monday", "Europe/Moscow")


def test_the_past_and_more_than_a_year_ahead_are_refused() -> None:
    assert start_time_problem(NOW + timedelta(days=1), NOW) is None
    assert start_time_problem(NOW - timedelta(seconds=30), NOW) is None  # the minute's grace
    assert start_time_problem(NOW + timedelta(days=365), NOW) is None
    past = start_time_problem(NOW - timedelta(hours=2), NOW)
    assert past == "2026-12-05T10:00+00:00 is in the past"
    ahead = start_time_problem(NOW + timedelta(days=366), NOW)
    assert ahead is not None and "more than a year ahead" in ahead


def test_a_dst_zone_reads_the_local_wall_time() -> None:
    at = parse_start_at("2027-03-28T09:00", "Europe/Berlin")  # the day clocks go forward
    assert at.utcoffset() == ZoneInfo("Europe/Berlin").utcoffset(at) == timedelta(hours=2)

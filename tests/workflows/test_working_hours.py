"""The sending calendar: working hours, local days, clock hours and the rate window's key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from workflows.working_hours import (
    WorkingHours,
    clock_hour_bounds,
    is_working_time,
    local_day_bounds,
    next_clock_hour,
    next_day_start,
    next_working_start,
    rate_window_key,
)

MSK = ZoneInfo("Europe/Moscow")
HOURS = WorkingHours("Europe/Moscow", 9, 18)


def msk(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=MSK)  # 2026-12-07 is a Monday


@pytest.mark.parametrize(
    ("now", "working"),
    [(msk(7, 8, 59), False), (msk(7, 9, 0), True), (msk(7, 17, 59), True), (msk(7, 18, 0), False)],
)
def test_working_time_is_start_inclusive_end_exclusive(now: datetime, working: bool) -> None:
    assert is_working_time(now, HOURS) is working
    assert is_working_time(now.astimezone(ZoneInfo("UTC")), HOURS) is working


def test_next_working_start_today_or_tomorrow() -> None:
    assert next_working_start(msk(7, 6, 30), HOURS) == msk(7, 9)
    assert next_working_start(msk(7, 18, 0), HOURS) == msk(8, 9)
    assert next_working_start(msk(7, 23, 59), HOURS) == msk(8, 9)


def test_daily_limit_resumes_tomorrow_at_start() -> None:
    assert next_day_start(msk(7, 10, 15), HOURS) == msk(8, 9)


def test_next_clock_hour_and_window_key() -> None:
    assert next_clock_hour(msk(7, 14, 30), "Europe/Moscow") == msk(7, 15)
    assert rate_window_key(msk(7, 14, 30), "Europe/Moscow") == "crm:mailer:rate:hour:2026-12-07:14"
    # The key is local time, whatever zone "now" comes in.
    utc_now = datetime(2026, 12, 7, 11, 30, tzinfo=ZoneInfo("UTC"))
    assert rate_window_key(utc_now, "Europe/Moscow") == "crm:mailer:rate:hour:2026-12-07:14"


def test_local_day_bounds() -> None:
    start, end = local_day_bounds(msk(7, 0, 10), "Europe/Moscow")
    assert (start, end) == (msk(7, 0), msk(8, 0))


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        is_working_time(datetime(2026, 12, 7, 10), HOURS)


BERLIN = "Europe/Berlin"  # a zone with DST: 2026-10-25 03:00 CEST → 02:00 CET


def test_next_clock_hour_is_one_real_hour_later_across_dst() -> None:
    first_two = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    second_two = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET, the repeated hour
    assert next_clock_hour(first_two, BERLIN).astimezone(UTC) == datetime(
        2026, 10, 25, 1, tzinfo=UTC
    )
    assert next_clock_hour(second_two, BERLIN).astimezone(UTC) == datetime(
        2026, 10, 25, 2, tzinfo=UTC
    )
    spring = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # 01:30 CET; 02:00 does not exist
    assert next_clock_hour(spring, BERLIN).astimezone(UTC) == datetime(2026, 3, 29, 1, tzinfo=UTC)
    start, end = clock_hour_bounds(first_two, BERLIN)
    assert end - start == timedelta(hours=1)


def test_the_repeated_hour_has_a_window_of_its_own() -> None:
    first_two = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    second_two = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    assert rate_window_key(first_two, BERLIN) == "crm:mailer:rate:hour:2026-10-25:02"
    assert rate_window_key(second_two, BERLIN) == "crm:mailer:rate:hour:2026-10-25:02+1"

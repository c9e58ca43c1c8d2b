"""The sending calendar: working hours, local days and clock hours in MAILER_TIMEZONE.

Pure functions of an aware "now" (the workflow's ``workflow.now()``, or an activity's input),
so the time-skipping server and the simulator exercise exactly this code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from mailer.core.working_days import WorkingDays

RATE_WINDOW_PREFIX = "crm:mailer:rate:hour:"


@dataclass(frozen=True)
class WorkingHours:
    """Sending is allowed from ``start`` (inclusive) to ``end`` (exclusive), local time, on
    the working days of ``days`` (every day unless told)."""

    timezone: str
    start: int
    end: int
    days: WorkingDays = field(default_factory=WorkingDays)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def _local(now: datetime, zone: ZoneInfo) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(zone)


def _at_hour(day: datetime, hour: int, zone: ZoneInfo) -> datetime:
    """``hour``:00 local on ``day``'s date (hour 24 is the next midnight)."""
    midnight = datetime.combine(day.date(), time(0), tzinfo=zone)
    # Add whole hours to the local wall clock, then re-attach the zone (DST-safe enough for
    # whole-hour boundaries in zones whose changes happen at night).
    return (midnight.replace(tzinfo=None) + timedelta(hours=hour)).replace(tzinfo=zone)


# A calendar with no working day in this many days ahead is refused at start-up; the search
# stops here rather than loop.
SEARCH_DAYS = 800


def is_working_time(now: datetime, hours: WorkingHours) -> bool:
    local = _local(now, hours.zone)
    return hours.start <= local.hour < hours.end and hours.days.works(local.date())


def next_working_start(now: datetime, hours: WorkingHours) -> datetime:
    """The next moment sending opens: today's start if still ahead and today works, else
    the start of the next working day (weekends, holidays skipped; a transferred working
    Saturday taken)."""
    zone = hours.zone
    local = _local(now, zone)
    today_start = _at_hour(local, hours.start, zone)
    if local < today_start and hours.days.works(local.date()):
        return today_start
    for ahead in range(1, SEARCH_DAYS):
        day = local + timedelta(days=ahead)
        if hours.days.works(day.date()):
            return _at_hour(day, hours.start, zone)
    return _at_hour(local + timedelta(days=SEARCH_DAYS), hours.start, zone)


def in_zone(hours: WorkingHours, zone: str) -> WorkingHours:
    """The same hours and calendar, local to ``zone`` (a recipient's; '' or a name that is
    not a zone: MAILER_TIMEZONE's)."""
    return replace(hours, timezone=zone) if zone and is_zone(zone) else hours


def is_zone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone this machine knows."""
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return False
    return True


def open_zones(now: datetime, hours: WorkingHours, zones: Iterable[str]) -> list[str]:
    """Those of ``zones`` whose working hours hold at ``now``."""
    return [zone for zone in zones if is_working_time(now, in_zone(hours, zone))]


def next_opening(now: datetime, hours: WorkingHours, zones: Iterable[str]) -> datetime:
    """The first moment after ``now`` the working hours open in any of ``zones`` (at least
    one), in MAILER_TIMEZONE."""
    starts = [next_working_start(now, in_zone(hours, zone)) for zone in zones]
    return min(starts).astimezone(hours.zone)


def next_day_start(now: datetime, hours: WorkingHours) -> datetime:
    """Tomorrow at the working-hours start (the daily limit's resume time)."""
    zone = hours.zone
    return _at_hour(_local(now, zone) + timedelta(days=1), hours.start, zone)


def clock_hour_bounds(now: datetime, timezone: str) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the local clock hour containing ``now``: one real hour apart
    even across a DST change (Python adds and subtracts wall-clock time within one zone,
    so the arithmetic is done in UTC)."""
    start = _local(now, ZoneInfo(timezone)).replace(minute=0, second=0, microsecond=0)
    start_utc = start.astimezone(UTC)
    return start_utc, start_utc + timedelta(hours=1)


def next_clock_hour(now: datetime, timezone: str) -> datetime:
    """The start of the next clock hour (the rate window's resume time), local time."""
    return clock_hour_bounds(now, timezone)[1].astimezone(ZoneInfo(timezone))


def local_day_bounds(now: datetime, timezone: str) -> tuple[datetime, datetime]:
    """[start, end) of the local calendar day containing ``now``."""
    zone = ZoneInfo(timezone)
    local = _local(now, zone)
    start = datetime.combine(local.date(), time(0), tzinfo=zone)
    end = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=zone)
    return start, end


def hour_label(now: datetime, timezone: str) -> str:
    """``YYYY-MM-DD:HH`` of the local clock hour containing ``now`` (Redis key suffixes).

    When clocks go back, the repeated hour is a different hour with a window of its own:
    its second occurrence is labelled ``YYYY-MM-DD:HH+1`` (the seed's format otherwise).
    """
    local = _local(now, ZoneInfo(timezone))
    return f"{local:%Y-%m-%d:%H}" + ("+1" if local.fold else "")


def rate_window_key(now: datetime, timezone: str) -> str:
    """The seed's Redis key for the clock hour containing ``now``."""
    return RATE_WINDOW_PREFIX + hour_label(now, timezone)

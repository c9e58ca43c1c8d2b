"""When a scheduled start may be (pure): ``mailer start ID --at ISO`` and the workflow's
``reschedule`` update read and check the time with these.

A time without an offset is read in ``MAILER_TIMEZONE`` (operators think in the CRM's
zone, as every time mailer prints). A time more than a minute in the past is refused (a
minute's grace: ``--at 10:05`` typed at 10:05:30 starts now); so is one more than a year
ahead (a typo's year, not a plan).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

GRACE = timedelta(minutes=1)
FURTHEST_AHEAD = timedelta(days=365)


def parse_start_at(text: str, timezone: str) -> datetime:
    """``2026-12-07T09:00`` (in ``timezone``) or ``2026-12-07T09:00+10:00`` → an aware time.
    Raises ValueError with one line naming what is wrong."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO date and time (such as 2026-12-07T09:00 or "
            "2026-12-07T09:00+03:00)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(timezone))
    return parsed


def start_time_problem(at: datetime, now: datetime) -> str | None:
    """Why ``at`` cannot be a start time at ``now`` (one line), or ``None`` if it can."""
    if at < now - GRACE:
        return f"{at.isoformat(timespec='minutes')} is in the past"
    if at > now + FURTHEST_AHEAD:
        return (
            f"{at.isoformat(timespec='minutes')} is more than a year ahead "
            f"(the latest is {(now + FURTHEST_AHEAD).isoformat(timespec='minutes')})"
        )
    return None

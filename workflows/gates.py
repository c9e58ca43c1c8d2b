"""Whether a campaign may send now, and if not, why and until when (the seed's reasons).

Pure functions of the snapshot and the workflow's clock. The rate window is the one gate
that needs I/O (a Redis counter shared by every campaign); the send activity applies it and
reports ``rate_limited``, which :func:`rate_deferral` turns into a deferral.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailer.core.working_days import WorkingDays
from workflows.contracts import Limits, Snapshot
from workflows.states import DeferReason
from workflows.working_hours import (
    WorkingHours,
    hour_label,
    is_working_time,
    next_clock_hour,
    next_day_start,
    next_opening,
    next_working_start,
    open_zones,
)


@dataclass(frozen=True)
class Deferral:
    reason: DeferReason
    until: datetime


def working_hours(limits: Limits) -> WorkingHours:
    days = WorkingDays.of(limits.working_days, limits.closed_dates, limits.open_dates)
    return WorkingHours(limits.timezone, limits.working_hours_start, limits.working_hours_end, days)


def evaluate_gates(
    now: datetime, snapshot: Snapshot, transient_until: datetime | None
) -> Deferral | None:
    """The first gate that blocks, in the seed's order, or ``None`` if sending may go on."""
    limits = snapshot.limits
    hours = working_hours(limits)
    if limits.recipient_timezones and snapshot.pending_zones:
        # Each recipient's own hours: closed only when no pending recipient's zone is open.
        if not open_zones(now, hours, snapshot.pending_zones):
            until = next_opening(now, hours, snapshot.pending_zones)
            return Deferral(DeferReason.OUTSIDE_HOURS, until)
    elif not is_working_time(now, hours):
        return Deferral(DeferReason.OUTSIDE_HOURS, next_working_start(now, hours))
    if snapshot.quota_available <= 0:
        # The quota sync runs hourly; the workflow also syncs when it wakes.
        return Deferral(DeferReason.QUOTA_EXHAUSTED, next_clock_hour(now, limits.timezone))
    if 0 < limits.per_user_daily_limit <= snapshot.sent_today_by_creator:
        return Deferral(DeferReason.DAILY_LIMIT, next_day_start(now, hours))
    if transient_until is not None and now < transient_until:
        return Deferral(DeferReason.TRANSIENT_ERROR, transient_until)
    return None


# Deferrals whose end changes nothing the next batch does not read for itself: the batch
# claims under the quota and the daily limit in SQL, stops if the row is no longer
# ``sending``, and returns the campaign as it left it.
_BATCH_READS_FOR_ITSELF = frozenset({DeferReason.RATE_PER_HOUR, DeferReason.TRANSIENT_ERROR})


def reads_after_waking(reason: DeferReason) -> bool:
    """Whether a campaign whose deferral for ``reason`` ran out reads the campaign before it
    decides again.

    After a rate window or a retry wait (minutes, within the day) the gates are decided on
    the campaign as it was before the sleep, and only a gate that blocks on that is read
    again before the campaign sleeps on it: one activity fewer per wake. An empty quota is
    asked of the provider, and a night or a day's limit changes the day's counts the gates
    and the batch's size rest on, so those still read first.
    """
    return reason not in _BATCH_READS_FOR_ITSELF


def rate_deferral(now: datetime, limits: Limits) -> Deferral:
    """The hourly window is full: resume at the start of the next clock hour."""
    return Deferral(DeferReason.RATE_PER_HOUR, next_clock_hour(now, limits.timezone))


def transient_retry_at(now: datetime, limits: Limits) -> datetime:
    return now + timedelta(minutes=limits.transient_retry_delay_minutes)


def batch_allowance(snapshot: Snapshot) -> int:
    """How many messages the next batch may send.

    At most the batch size, the quota left, the creator's daily allowance left, the pending
    count, and a fair share of the hourly rate among the campaigns sending now, so that one
    campaign cannot take the whole window while others wait.
    """
    limits = snapshot.limits
    allowance = min(limits.send_batch_size, snapshot.quota_available, snapshot.pending)
    if limits.per_user_daily_limit > 0:
        allowance = min(allowance, limits.per_user_daily_limit - snapshot.sent_today_by_creator)
    return max(0, min(allowance, fair_share(limits.rate_per_hour, snapshot.active_campaigns)))


def fair_share(rate_per_hour: int, competing_campaigns: int) -> int:
    """One campaign's share of the hourly window when ``competing_campaigns`` send at once."""
    return math.ceil(rate_per_hour / max(1, competing_campaigns))


def batch_is_stale(
    planned: datetime, attempt: datetime, hours: WorkingHours, *, recipient_zones: bool = False
) -> bool:
    """Whether a send attempt starting at ``attempt`` must not act on a plan made at
    ``planned``: outside working hours, or in another clock hour (another rate window,
    perhaps another day). The workflow then decides again. With recipient time zones the
    attempt takes only recipients whose hours hold (the plan filters them), so only the
    clock hour counts here."""
    if not recipient_zones and not is_working_time(attempt, hours):
        return True
    return hour_label(attempt, hours.timezone) != hour_label(planned, hours.timezone)


def breaker_tripped(consecutive_transient_errors: int, limits: Limits) -> bool:
    """The circuit breaker: this many transient errors in a row pause the campaign."""
    return consecutive_transient_errors >= limits.circuit_breaker_threshold

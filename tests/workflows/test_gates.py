"""The pure decisions: the gates in the seed's order, the batch allowance, the breaker."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from workflows.contracts import Limits, Snapshot
from workflows.gates import (
    batch_allowance,
    batch_is_stale,
    breaker_tripped,
    evaluate_gates,
    rate_deferral,
    reads_after_waking,
    transient_retry_at,
)
from workflows.states import DeferReason
from workflows.working_hours import WorkingHours

MSK = ZoneInfo("Europe/Moscow")


def msk(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=MSK)  # 2026-12-07 is a Monday


def snapshot(**changes: object) -> Snapshot:
    limits = Limits(**{k: v for k, v in changes.items() if k in Limits.__dataclass_fields__})  # type: ignore[arg-type]
    values: dict[str, object] = {
        "quota_available": 1000,
        "sent_today_by_creator": 0,
        "active_campaigns": 1,
        "pending": 500,
        "sent": 0,
        "failed": 0,
    }
    values.update({k: v for k, v in changes.items() if k in values})
    return Snapshot(limits=limits, **values)  # type: ignore[arg-type]


def test_gates_in_the_seeds_order() -> None:
    night = evaluate_gates(msk(7, 20), snapshot(quota_available=0), None)
    assert night is not None and (night.reason, night.until) == (
        DeferReason.OUTSIDE_HOURS,
        msk(8, 9),
    )
    quota = evaluate_gates(
        msk(7, 10),
        snapshot(quota_available=0, per_user_daily_limit=5, sent_today_by_creator=5),
        None,
    )
    assert quota is not None and (quota.reason, quota.until) == (
        DeferReason.QUOTA_EXHAUSTED,
        msk(7, 11),
    )
    daily = evaluate_gates(
        msk(7, 10), snapshot(per_user_daily_limit=250, sent_today_by_creator=250), None
    )
    assert daily is not None and (daily.reason, daily.until) == (DeferReason.DAILY_LIMIT, msk(8, 9))
    retry = msk(7, 10, 5)
    transient = evaluate_gates(msk(7, 10), snapshot(), retry)
    assert transient is not None and (transient.reason, transient.until) == (
        DeferReason.TRANSIENT_ERROR,
        retry,
    )
    assert evaluate_gates(msk(7, 10, 5), snapshot(), retry) is None
    assert (
        evaluate_gates(
            msk(7, 10), snapshot(per_user_daily_limit=0, sent_today_by_creator=10**6), None
        )
        is None
    )


def test_rate_deferral_is_next_clock_hour() -> None:
    deferral = rate_deferral(msk(7, 14, 59), Limits())
    assert (deferral.reason, deferral.until) == (DeferReason.RATE_PER_HOUR, msk(7, 15))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, 100),
        ({"send_batch_size": 30}, 30),
        ({"quota_available": 7}, 7),
        ({"pending": 3}, 3),
        ({"per_user_daily_limit": 250, "sent_today_by_creator": 240}, 10),
        ({"active_campaigns": 3}, 34),
        ({"quota_available": -5}, 0),
    ],
)
def test_batch_allowance(changes: dict[str, object], expected: int) -> None:
    assert batch_allowance(snapshot(**changes)) == expected


def test_breaker_trips_at_exactly_the_threshold() -> None:
    limits = Limits(circuit_breaker_threshold=10)
    assert not breaker_tripped(9, limits)
    assert breaker_tripped(10, limits)


def test_transient_retry_delay() -> None:
    assert transient_retry_at(msk(7, 10), Limits(transient_retry_delay_minutes=5)) == msk(
        7, 10
    ) + timedelta(minutes=5)


def test_a_batch_retried_in_another_hour_or_after_hours_is_stale() -> None:
    hours = WorkingHours("Europe/Moscow", 9, 18)
    planned = msk(7, 17, 59)
    assert not batch_is_stale(planned, msk(7, 17, 59) + timedelta(seconds=30), hours)
    assert batch_is_stale(planned, msk(7, 18, 0), hours)  # after hours
    assert batch_is_stale(planned, msk(8, 9, 0), hours)  # the next morning: another window
    assert batch_is_stale(msk(7, 10, 59), msk(7, 11, 0), hours)  # another clock hour


@pytest.mark.parametrize(
    ("reason", "reads"),
    [
        (DeferReason.RATE_PER_HOUR, False),  # the batch claims under every limit itself
        (DeferReason.TRANSIENT_ERROR, False),  # a retry wait: minutes, within the day
        (DeferReason.QUOTA_EXHAUSTED, True),  # the provider is asked first
        (DeferReason.OUTSIDE_HOURS, True),  # a night: the day's counts start again
        (DeferReason.DAILY_LIMIT, True),  # likewise
    ],
)
def test_only_short_waits_go_straight_to_the_batch_when_they_run_out(
    reason: DeferReason, reads: bool
) -> None:
    assert reads_after_waking(reason) is reads

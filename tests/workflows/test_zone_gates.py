"""Each recipient's own working hours, as pure decisions: which zones are open, when the
next opens, and the gate that closes only when none of the pending recipients' zones is open."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from workflows.contracts import Limits, Snapshot
from workflows.gates import batch_is_stale, evaluate_gates
from workflows.states import DeferReason
from workflows.working_hours import WorkingHours, in_zone, next_opening, open_zones

MOSCOW = ZoneInfo("Europe/Moscow")
HOURS = WorkingHours("Europe/Moscow", 9, 18)
# Monday 7 December 2026, 03:00 Moscow: 10:00 in Vladivostok, 02:00 in Kaliningrad.
EARLY = datetime(2026, 12, 7, 3, 0, tzinfo=MOSCOW)


def snapshot(zones: list[str], *, on: bool = True) -> Snapshot:
    return Snapshot(
        limits=Limits(recipient_timezones=on),
        quota_available=1000,
        sent_today_by_creator=0,
        active_campaigns=1,
        pending=10,
        sent=0,
        failed=0,
        pending_zones=zones,
    )


def test_open_zones_and_the_next_opening() -> None:
    zones = ["Asia/Vladivostok", "", "Europe/Kaliningrad"]
    assert open_zones(EARLY, HOURS, zones) == ["Asia/Vladivostok"]
    later = EARLY.replace(hour=9, minute=30)
    assert open_zones(later, HOURS, zones) == ["Asia/Vladivostok", ""]
    assert next_opening(EARLY, HOURS, ["", "Europe/Kaliningrad"]) == EARLY.replace(hour=9)
    assert next_opening(EARLY, HOURS, ["Europe/Kaliningrad"]) == EARLY.replace(hour=10)
    # Vladivostok closes at 11:00 Moscow; it opens again at 02:00 Moscow the next day.
    evening = EARLY.replace(hour=20)
    assert next_opening(evening, HOURS, ["Asia/Vladivostok"]) == datetime(
        2026, 12, 8, 2, 0, tzinfo=MOSCOW
    )


def test_a_name_that_is_not_a_zone_counts_as_the_default() -> None:
    assert in_zone(HOURS, "Mars/Olympus") == HOURS
    assert in_zone(HOURS, "") == HOURS
    assert in_zone(HOURS, "Asia/Vladivostok").timezone == "Asia/Vladivostok"


def test_the_gate_closes_only_when_no_pending_zone_is_open() -> None:
    assert evaluate_gates(EARLY, snapshot(["Asia/Vladivostok", ""]), None) is None
    closed = evaluate_gates(EARLY, snapshot(["", "Europe/Kaliningrad"]), None)
    assert closed is not None
    assert (closed.reason, closed.until) == (DeferReason.OUTSIDE_HOURS, EARLY.replace(hour=9))
    # Off (the seed's one zone): the zones are not looked at.
    off = evaluate_gates(EARLY, snapshot(["Asia/Vladivostok"], on=False), None)
    assert off is not None and off.until == EARLY.replace(hour=9)


def test_with_zones_only_the_clock_hour_makes_an_attempt_stale() -> None:
    planned = EARLY
    assert batch_is_stale(planned, planned + timedelta(minutes=5), HOURS)
    assert not batch_is_stale(planned, planned + timedelta(minutes=5), HOURS, recipient_zones=True)
    assert batch_is_stale(planned, planned + timedelta(hours=1), HOURS, recipient_zones=True)

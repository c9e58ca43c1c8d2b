"""The carried state's transitions: after every batch outcome, a transient error, a pause and
a resume (pure functions; the workflow only applies them)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from workflows.contracts import CarriedState, Limits, SendBatchResult, Snapshot
from workflows.gates import Deferral
from workflows.states import DeferReason, SendOutcome
from workflows.transitions import (
    BLOCKED_RECHECK,
    PAUSED_BY_OPERATOR,
    PauseCause,
    Request,
    after_batch,
    after_transient,
    cleared,
    paused,
    paused_by_operator,
    stronger,
)

MSK = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 12, 7, 14, 30, tzinfo=MSK)  # a Monday, inside 09-18
LIMITS = Limits(circuit_breaker_threshold=3, transient_retry_delay_minutes=5)


def snapshot(pending: int = 50, quota: int = 1000) -> Snapshot:
    return Snapshot(
        limits=LIMITS,
        quota_available=quota,
        sent_today_by_creator=0,
        active_campaigns=1,
        pending=pending,
        sent=10,
        failed=0,
    )


def result(outcome: SendOutcome, sent: int = 0, **changes: object) -> SendBatchResult:
    values: dict[str, object] = {"snapshot": snapshot(), "error": "", "retry_at": None}
    values.update(changes)
    return SendBatchResult(outcome, sent, 0, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("outcome", "deferral"),
    [
        (SendOutcome.COMPLETED, None),
        (SendOutcome.STOPPED, None),
        (SendOutcome.STALE, None),
        (
            SendOutcome.RATE_LIMITED,
            Deferral(DeferReason.RATE_PER_HOUR, NOW.replace(hour=15, minute=0)),
        ),
        (SendOutcome.DOMAIN_PACED, Deferral(DeferReason.RATE_PER_HOUR, NOW + timedelta(minutes=1))),
        (SendOutcome.BLOCKED, Deferral(DeferReason.QUOTA_EXHAUSTED, NOW + BLOCKED_RECHECK)),
    ],
)
def test_each_outcome_defers_as_the_table_says(
    outcome: SendOutcome, deferral: Deferral | None
) -> None:
    after = after_batch(CarriedState(), result(outcome), NOW)
    assert after.deferral == deferral
    assert not after.carried.paused


def test_a_domain_paced_batch_sleeps_to_the_minute_it_names() -> None:
    minute_end = NOW + timedelta(seconds=30)
    after = after_batch(CarriedState(), result(SendOutcome.DOMAIN_PACED, retry_at=minute_end), NOW)
    assert after.deferral == Deferral(DeferReason.RATE_PER_HOUR, minute_end)


def test_blocked_with_a_gate_that_says_why_leaves_the_deferral_to_the_gates() -> None:
    empty = result(SendOutcome.BLOCKED, snapshot=snapshot(quota=0))
    assert after_batch(CarriedState(), empty, NOW).deferral is None


def test_recipients_waiting_sleeps_until_the_first_retry() -> None:
    retry = NOW + timedelta(minutes=15)
    after = after_batch(CarriedState(), result(SendOutcome.RECIPIENTS_WAITING, retry_at=retry), NOW)
    assert (after.deferral, after.carried.transient_until) == (None, retry)


def test_transient_errors_count_then_trip_the_breaker_at_the_threshold() -> None:
    carried = CarriedState()
    for count in (1, 2):
        after = after_batch(carried, result(SendOutcome.TRANSIENT, error="421 busy"), NOW)
        carried = after.carried
        assert carried.consecutive_transient_errors == count
        assert carried.transient_until == NOW + timedelta(minutes=5)
        assert not carried.paused and not after.breaker_tripped
    tripped = after_batch(carried, result(SendOutcome.TRANSIENT, error="421 busy"), NOW)
    state = tripped.carried
    assert tripped.breaker_tripped and state.paused and state.paused_by == PauseCause.BREAKER
    assert state.pause_reason == "circuit breaker: 3 consecutive transient errors (last: 421 busy)"
    assert state.paused_defer_reason == DeferReason.TRANSIENT_ERROR
    assert (state.transient_until, state.last_error) == (None, "421 busy")
    assert not paused_by_operator(state)


def test_a_batch_that_sent_resets_the_count_and_says_so() -> None:
    carried = CarriedState(consecutive_transient_errors=2, last_error="421")
    after = after_batch(carried, result(SendOutcome.COMPLETED, sent=5), NOW)
    assert after.carried.consecutive_transient_errors == 0 and after.sent_something
    assert not after_batch(carried, result(SendOutcome.COMPLETED), NOW).sent_something


@pytest.mark.parametrize(
    ("outcome", "cause", "reason"),
    [
        (SendOutcome.CONFIGURATION, PauseCause.CONFIGURATION, "configuration error: 535 auth"),
        (SendOutcome.SERVER_REFUSED, PauseCause.SERVER_REFUSED, "refused by the server: 535 auth"),
    ],
)
def test_configuration_and_refusal_pause_with_the_reason(
    outcome: SendOutcome, cause: PauseCause, reason: str
) -> None:
    state = after_batch(CarriedState(), result(outcome, error="535 auth"), NOW).carried
    assert (state.paused, state.paused_by, state.pause_reason) == (True, cause, reason)
    assert state.last_error == "535 auth" and not paused_by_operator(state)


def test_nothing_left_finishes_whatever_the_outcome_but_a_transient_one() -> None:
    done = result(SendOutcome.RATE_LIMITED, snapshot=snapshot(pending=0))
    assert after_batch(CarriedState(), done, NOW).deferral is None
    failed = result(SendOutcome.TRANSIENT, error="timeout", snapshot=snapshot(pending=0))
    assert after_batch(CarriedState(), failed, NOW).carried.consecutive_transient_errors == 1


def test_transitions_never_change_their_argument() -> None:
    carried = CarriedState(consecutive_transient_errors=2)
    after_batch(carried, result(SendOutcome.TRANSIENT, error="x"), NOW)
    after_transient(carried, "x", NOW, LIMITS)
    paused(carried, PauseCause.OPERATOR, PAUSED_BY_OPERATOR)
    assert carried == CarriedState(consecutive_transient_errors=2)


def test_an_operators_pause_starts_the_count_afresh_and_resume_clears_everything() -> None:
    carried = CarriedState(consecutive_transient_errors=4, last_error="421")
    held = paused(carried, PauseCause.OPERATOR, PAUSED_BY_OPERATOR)
    assert held.paused and held.consecutive_transient_errors == 0 and paused_by_operator(held)
    resumed = cleared(
        paused(carried, PauseCause.BREAKER, "circuit breaker", defer_reason="transient_error")
    )
    assert resumed == CarriedState()


def test_state_carried_by_older_runs_is_judged_by_its_reason() -> None:
    assert paused_by_operator(CarriedState(paused=True, pause_reason="paused by an operator"))
    assert not paused_by_operator(CarriedState(paused=True, pause_reason="circuit breaker: 10"))


def test_the_stronger_request_wins() -> None:
    assert stronger(Request.PAUSE, Request.RESUME) == Request.PAUSE
    assert stronger(Request.RESUME, Request.CANCEL) == Request.CANCEL
    assert stronger(Request.WAKE, Request.RESUME) == Request.RESUME
    assert stronger(Request.NONE, Request.WAKE) == Request.WAKE

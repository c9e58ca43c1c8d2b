"""What a campaign's row asks of its workflow, and the state a taken-over campaign starts
from (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from workflows.contracts import CarriedState, Progress
from workflows.requests import (
    Action,
    CampaignRow,
    adopted_state,
    cleared_by_resume_sql,
    decide,
    queue_row_cleared,
    scheduled_start,
    start_time_asked,
    worth_asking,
)
from workflows.states import WorkflowState
from workflows.transitions import RESTORED_BY_RECONCILE, PauseCause

NOW = datetime(2026, 12, 7, 21, 37, tzinfo=ZoneInfo("Europe/Moscow"))


def row(status: str, queue: str = "pending", **changes: object) -> CampaignRow:
    values: dict[str, object] = {"pending": 20}
    values.update(changes)
    return CampaignRow("c1", status, queue, **values)  # type: ignore[arg-type]


def running(state: WorkflowState, defer_reason: str = "") -> Progress:
    return Progress("c1", state, defer_reason=defer_reason)


@pytest.mark.parametrize(
    ("campaign", "progress", "action"),
    [
        # No run: a queued ready campaign starts, a sending or paused one is taken over.
        (row("ready"), None, Action.START),
        (row("ready", queue=""), None, Action.NOTHING),  # drafted, not queued
        (row("sending", queue="processing"), None, Action.START),
        (row("paused"), None, Action.START),
        (row("sending", pending=0), None, Action.NOTHING),
        (row("cancelled"), None, Action.NOTHING),
        (row("sent"), None, Action.NOTHING),
        # A run: the row asks only where it disagrees.
        (row("cancelled"), running(WorkflowState.DEFERRED), Action.CANCEL),
        (row("paused"), running(WorkflowState.SENDING), Action.PAUSE),
        (row("paused"), running(WorkflowState.PAUSED), Action.NOTHING),
        (row("sending"), running(WorkflowState.PAUSED), Action.RESUME),
        (
            row("sending", defer_reason="rate_per_hour", deferred_until=NOW),
            running(WorkflowState.DEFERRED),
            Action.NOTHING,
        ),
        # The playbook's resume SQL: the deferred row emptied.
        (row("sending"), running(WorkflowState.DEFERRED), Action.RESUME),
        (row("sending"), running(WorkflowState.SENDING), Action.NOTHING),
        (row("cancelled"), running(WorkflowState.CANCELLED), Action.NOTHING),
    ],
)
def test_what_the_row_asks(
    campaign: CampaignRow, progress: Progress | None, action: Action
) -> None:
    assert decide(campaign, progress) == action


def test_a_deferral_taken_over_holds_until_it_ends_with_the_breakers_count() -> None:
    until = NOW + timedelta(minutes=23)
    taken = row(
        "sending",
        defer_reason="rate_per_hour",
        deferred_until=until,
        consecutive_transient_errors=7,
        last_error="421 4.7.0 try later",
    )
    assert adopted_state(taken, NOW) == CarriedState(
        consecutive_transient_errors=7,
        last_error="421 4.7.0 try later",
        held_reason="rate_per_hour",
        held_until=until,
    )


def test_a_deferral_that_ended_or_names_no_reason_of_ours_is_not_held() -> None:
    ended = row("sending", defer_reason="rate_per_hour", deferred_until=NOW - timedelta(1))
    assert adopted_state(ended, NOW) == CarriedState()
    odd = row("sending", defer_reason="celery_magic", deferred_until=NOW + timedelta(1))
    assert adopted_state(odd, NOW) == CarriedState()


def test_a_paused_campaign_stays_paused_with_its_reason() -> None:
    breaker = adopted_state(
        row(
            "paused",
            defer_reason="transient_error",
            consecutive_transient_errors=10,
            last_error="circuit breaker",
        ),
        NOW,
    )
    assert breaker is not None and breaker.paused and breaker.pause_reason == "circuit breaker"
    assert (breaker.paused_defer_reason, breaker.consecutive_transient_errors) == (
        "transient_error",
        10,
    )
    plain = adopted_state(row("paused"), NOW)
    assert plain is not None and plain.paused_by == PauseCause.RESTORED
    assert plain.pause_reason == RESTORED_BY_RECONCILE


def test_a_ready_campaign_starts_from_scratch() -> None:
    assert adopted_state(row("ready"), NOW) is None


LATER = NOW + timedelta(hours=5)


def scheduled(state: WorkflowState = WorkflowState.SCHEDULED) -> Progress:
    return Progress("c1", state, scheduled_for=LATER)


@pytest.mark.parametrize(
    ("campaign", "progress", "action"),
    [
        # The row agrees with the scheduled run: nothing to do.
        (row("ready", deferred_until=LATER), scheduled(), Action.NOTHING),
        (row("paused", deferred_until=LATER), scheduled(WorkflowState.PAUSED), Action.NOTHING),
        # The CRM moved the time, emptied it, or set the campaign sending: the start moves.
        (row("ready", deferred_until=LATER + timedelta(hours=1)), scheduled(), Action.RESCHEDULE),
        (row("ready"), scheduled(), Action.RESCHEDULE),
        (row("sending", deferred_until=LATER), scheduled(), Action.RESCHEDULE),
        # Paused, cancelled, or set back to ready while paused before the start.
        (row("paused", deferred_until=LATER), scheduled(), Action.PAUSE),
        (row("cancelled", deferred_until=LATER), scheduled(), Action.CANCEL),
        (row("ready", deferred_until=LATER), scheduled(WorkflowState.PAUSED), Action.RESUME),
    ],
)
def test_what_a_scheduled_campaigns_row_asks(
    campaign: CampaignRow, progress: Progress, action: Action
) -> None:
    assert decide(campaign, progress) == action


def test_a_ready_row_with_a_future_time_is_a_scheduled_start() -> None:
    assert scheduled_start(row("ready", deferred_until=LATER), NOW) == LATER
    assert scheduled_start(row("ready", deferred_until=NOW - timedelta(minutes=5)), NOW) is None
    assert scheduled_start(row("ready"), NOW) is None
    assert scheduled_start(row("sending", deferred_until=LATER), NOW) is None  # a deferral


def test_where_a_row_moves_a_scheduled_start() -> None:
    assert start_time_asked(row("ready", deferred_until=LATER), NOW) == LATER
    assert start_time_asked(row("ready", deferred_until=NOW - timedelta(hours=1)), NOW) == NOW
    assert start_time_asked(row("ready"), NOW) == NOW
    assert start_time_asked(row("sending", deferred_until=LATER), NOW) == NOW


@pytest.mark.parametrize(
    ("campaign", "cleared"),
    [
        (row("sending"), True),  # what the playbook's resume SQL leaves
        (row("sending", defer_reason="rate_per_hour"), False),
        (row("sending", deferred_until=NOW), False),
        (row("sending", consecutive_transient_errors=3), False),
        (row("sending", "processing"), False),
    ],
)
def test_only_a_row_the_resume_sql_cleared_makes_reconcile_ask_the_workflow(
    campaign: CampaignRow, cleared: bool
) -> None:
    assert queue_row_cleared(campaign) is cleared
    # Under any other row, no workflow state makes it a resume: reconcile need not ask.
    for progress in (
        running(WorkflowState.DEFERRED, "rate_per_hour"),
        running(WorkflowState.PAUSED, "transient_error"),
    ):
        assert cleared_by_resume_sql(campaign, progress) is cleared
    assert not cleared_by_resume_sql(campaign, running(WorkflowState.SENDING))


@pytest.mark.parametrize(
    ("listed_state", "asked"),
    [
        (None, True),  # not in the listing (or no listing): only the workflow can tell
        ("", True),  # listed before it published a state
        ("deferred", True),
        ("paused", True),
        ("sending", False),  # every woken campaign's row reads cleared while it sends
        ("starting", False),
        ("scheduled", False),
    ],
)
def test_reconcile_asks_only_a_workflow_the_listing_shows_waiting(
    listed_state: str | None, asked: bool
) -> None:
    assert worth_asking(row("sending"), listed_state) is asked
    # Under a row the resume SQL did not clear, no listed state makes it worth a query.
    assert not worth_asking(row("sending", defer_reason="transient_error"), listed_state)

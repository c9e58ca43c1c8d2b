"""The CRM drives campaigns through the seed's tables: what a row asks of a campaign's
workflow, and the state a campaign taken over without a workflow starts from.

Pure functions of a campaign's row (``mailer_campaign`` + ``mailer_campaignqueue``) and its
workflow's progress; the dispatcher and reconcile activities read both and act.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from workflows.contracts import CarriedState, Progress
from workflows.states import CampaignStatus, DeferReason, QueueStatus, WorkflowState
from workflows.transitions import RESTORED_BY_RECONCILE, PauseCause

DEFER_REASONS = frozenset(reason.value for reason in DeferReason)


@dataclass(frozen=True)
class CampaignRow:
    """A campaign as the playbook's SQL sees it: its status and its queue row."""

    campaign_id: str
    status: str
    queue_status: str  # '' without a queue row
    defer_reason: str = ""
    deferred_until: datetime | None = None
    consecutive_transient_errors: int = 0
    last_error: str = ""
    pending: int = 0  # recipients still pending


class Action(enum.StrEnum):
    """What the dispatcher does for a campaign whose row changed."""

    NOTHING = "nothing"
    START = "start"  # a run for a campaign queued (or taken over) with none
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    RESCHEDULE = "reschedule"  # a scheduled start the CRM moved (deferred_until) or began


def decide(row: CampaignRow, progress: Progress | None) -> Action:
    """What the row asks of the workflow (``progress`` is ``None`` when no run is open).

    The row is a request only where it and the workflow disagree: the workflow writes the
    row itself on every change, so a row that agrees asks nothing.
    """
    if progress is None:
        return _without_a_run(row)
    state = progress.state
    if state in (WorkflowState.SENT, WorkflowState.CANCELLED):
        return Action.NOTHING
    if row.status == CampaignStatus.CANCELLED:
        return Action.CANCEL
    if row.status == CampaignStatus.PAUSED and state != WorkflowState.PAUSED:
        return Action.PAUSE
    if moved_start(row, progress):
        return Action.RESCHEDULE
    if row.status == CampaignStatus.READY and state == WorkflowState.PAUSED:
        # Paused before its scheduled start, and the CRM set it back to ready.
        return Action.RESUME
    if row.status == CampaignStatus.SENDING and state == WorkflowState.PAUSED:
        # The CRM's UI set it back to sending (or the playbook's resume SQL cleared a
        # breaker pause's row).
        return Action.RESUME
    if cleared_by_resume_sql(row, progress):
        return Action.RESUME
    return Action.NOTHING


def _without_a_run(row: CampaignRow) -> Action:
    if row.pending == 0:
        return Action.NOTHING
    if row.status == CampaignStatus.READY:
        # Queued the way the old engine expected: a pending queue row.
        return Action.START if row.queue_status == QueueStatus.PENDING else Action.NOTHING
    if row.status in (CampaignStatus.SENDING, CampaignStatus.PAUSED):
        return Action.START  # taken over: its state comes from the row (adopted_state)
    return Action.NOTHING


def moved_start(row: CampaignRow, progress: Progress) -> bool:
    """A campaign waiting for its scheduled start whose row the CRM changed: a new
    ``deferred_until`` moves the start there, ``sending`` (or an emptied time) starts it now."""
    if progress.scheduled_for is None or row.status == CampaignStatus.PAUSED:
        return False
    if row.status == CampaignStatus.SENDING:
        return True
    return row.status == CampaignStatus.READY and row.deferred_until != progress.scheduled_for


def start_time_asked(row: CampaignRow, now: datetime) -> datetime:
    """Where the row moves a scheduled start: its ``deferred_until``, or now (a time gone
    by, none, or a campaign set ``sending``)."""
    until = row.deferred_until
    if row.status != CampaignStatus.READY or until is None or until < now:
        return now
    return until


def queue_row_cleared(row: CampaignRow) -> bool:
    """The queue row as the playbook's section-3 "resume" SQL leaves it: no defer reason, no
    deferral's end, no error count, pending. Only then does the workflow's own state matter
    (:func:`cleared_by_resume_sql`), so only then is it asked."""
    return (
        row.defer_reason == ""
        and row.deferred_until is None
        and row.consecutive_transient_errors == 0
        and row.queue_status == QueueStatus.PENDING
    )


# The workflow states under which a cleared queue row is an operator's resume
# (:func:`cleared_by_resume_sql`); "" is a run the listing shows without a state yet.
RESUMABLE_LISTED_STATES = ("", WorkflowState.DEFERRED, WorkflowState.PAUSED)


def worth_asking(row: CampaignRow, listed_state: str | None) -> bool:
    """Whether reconcile asks a running campaign's workflow for its progress.

    Only a cleared queue row can be the playbook's resume SQL, and only under a workflow
    that waits. The row of a campaign that is sending reads cleared too (pending, nothing
    deferred), and when thousands wake at once every one of them would be queried: a task
    on the workers that are waking them, and a replay of its history when it is not cached.
    So the state the visibility listing shows (``MailerStatus``) decides first; ``None``:
    the campaign is not in the listing (or the server cannot list), so it is asked. A state
    the listing has not caught up with yet is asked on the next turn."""
    if not queue_row_cleared(row):
        return False
    return listed_state is None or listed_state in RESUMABLE_LISTED_STATES


def cleared_by_resume_sql(row: CampaignRow, progress: Progress) -> bool:
    """The playbook's section-3 "resume" SQL empties defer_reason, deferred_until and the
    error count of a deferred (or breaker-paused) campaign's queue row; the workflow wrote
    them when it deferred, so an empty row under a waiting workflow is an operator's resume."""
    breaker_paused = (
        progress.state == WorkflowState.PAUSED
        and progress.defer_reason == DeferReason.TRANSIENT_ERROR
    )
    return queue_row_cleared(row) and (progress.state == WorkflowState.DEFERRED or breaker_paused)


def adopted_state(row: CampaignRow, now: datetime) -> CarriedState | None:
    """The state a run starts from for a campaign already ``sending`` or ``paused`` with no
    workflow (taken over from the Celery engine, or a run that was terminated): its pause,
    its deferral (nothing is sent before it ends), its breaker count and last error.
    ``None`` for a campaign that has not started (``ready``): the run starts it."""
    if row.status == CampaignStatus.READY:
        return None
    errors, last_error = row.consecutive_transient_errors, row.last_error
    if row.status == CampaignStatus.PAUSED:
        return CarriedState(
            paused=True,
            # With a last error the pause was probably the campaign's own (breaker,
            # configuration): left unnamed, its reason tells (paused_by_operator).
            paused_by="" if last_error else PauseCause.RESTORED,
            pause_reason=last_error or RESTORED_BY_RECONCILE,
            paused_defer_reason=row.defer_reason,
            consecutive_transient_errors=errors,
            last_error=last_error,
        )
    until = row.deferred_until
    deferred = until is not None and until > now and row.defer_reason in DEFER_REASONS
    return CarriedState(
        consecutive_transient_errors=errors,
        last_error=last_error,
        held_reason=row.defer_reason if deferred else "",
        held_until=until if deferred else None,
    )


def scheduled_start(row: CampaignRow, now: datetime) -> datetime | None:
    """When a ``ready`` campaign queued with a future ``deferred_until`` is to start: the
    CRM schedules a start by writing the time there (``mailer start --at`` writes the same);
    ``None`` for one to start now."""
    if row.status != CampaignStatus.READY or row.deferred_until is None:
        return None
    return row.deferred_until if row.deferred_until > now else None

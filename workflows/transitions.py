"""How a campaign's carried state changes: after a batch, a transient error, a pause, a
resume. Pure functions of the state and the workflow's clock, unit-tested like the gates;
:class:`workflows.campaign.CampaignWorkflow` applies what they return and does the I/O.

Nothing here mutates its argument: every function returns a new :class:`CarriedState`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from workflows.contracts import CarriedState, Limits, SendBatchResult, Snapshot
from workflows.gates import (
    Deferral,
    breaker_tripped,
    evaluate_gates,
    rate_deferral,
    transient_retry_at,
)
from workflows.states import DeferReason, SendOutcome

# If a batch reported "blocked" but the gates see nothing blocking (a race with another
# writer), look again after this long rather than spin.
BLOCKED_RECHECK = timedelta(minutes=1)
PACING_RECHECK = timedelta(minutes=1)

# Per-domain pacing is a rate window too (per minute, per group of domains): the tables keep
# the seed's five defer reasons, so a paced campaign waits as ``rate_per_hour``.
DOMAIN_PACING_REASON = DeferReason.RATE_PER_HOUR

# While the Celery engine's lock is held, look again this soon (the lock lives 600 s).
OLD_ENGINE_RECHECK = timedelta(seconds=15)
OLD_ENGINE_RUNNING = "the old engine holds crm:mailer:send_pending_emails:lock"

PAUSED_IN_DATABASE = "paused in the database"
PAUSED_BY_OPERATOR = "paused by an operator"
RESTORED_BY_RECONCILE = "paused (restored by reconcile)"


class PauseCause(enum.StrEnum):
    """Who paused the campaign: an operator (routine) or the campaign itself (needs someone)."""

    OPERATOR = "operator"  # a signal or update (CLI, Web UI, mailer.client)
    DATABASE = "database"  # the playbook's SQL: mailer_campaign.status = 'paused'
    RESTORED = "restored"  # reconcile restarted a campaign that was paused
    BREAKER = "breaker"  # MAILER_CIRCUIT_BREAKER_THRESHOLD transient errors in a row
    CONFIGURATION = "configuration"  # 535, a refused sender, a certificate
    SERVER_REFUSED = "server_refused"  # a run of 5xx at DATA across recipients


OPERATOR_CAUSES = frozenset({PauseCause.OPERATOR, PauseCause.DATABASE, PauseCause.RESTORED})


class Request(enum.IntEnum):
    """The operator's request the loop has not acted on yet. Only one is kept: a stronger
    request replaces a weaker one (a cancel beats a pause, a pause a resume, a resume the
    quota sync's wake), which is what acting on all of them in turn would come to."""

    NONE = 0
    WAKE = 1
    RESUME = 2
    PAUSE = 3
    CANCEL = 4


def stronger(current: Request, new: Request) -> Request:
    return max(current, new)


def paused_by_operator(carried: CarriedState) -> bool:
    """Whether the pause is routine (an operator's) rather than the campaign's own."""
    if carried.paused_by:
        return carried.paused_by in OPERATOR_CAUSES
    # State carried by a run older than ``paused_by``: its operator pauses said "paused …".
    return carried.pause_reason.startswith("paused")


def paused(
    carried: CarriedState, cause: PauseCause, reason: str, *, defer_reason: str = ""
) -> CarriedState:
    """Paused for ``cause``. An operator's pause starts the error count afresh; the
    campaign's own pauses keep it (the breaker's count is its reason)."""
    errors = 0 if cause in OPERATOR_CAUSES else carried.consecutive_transient_errors
    return replace(
        carried,
        paused=True,
        paused_by=cause,
        pause_reason=reason,
        paused_defer_reason=defer_reason,
        consecutive_transient_errors=errors,
    )


def cleared(carried: CarriedState) -> CarriedState:
    """A resume: the pause, the deferral's error count and the last error are gone."""
    return replace(
        carried,
        paused=False,
        paused_by="",
        consecutive_transient_errors=0,
        transient_until=None,
        last_error="",
        pause_reason="",
        paused_defer_reason="",
        held_reason="",
        held_until=None,
    )


@dataclass(frozen=True)
class Transition:
    """The state after an event, and what follows from it."""

    carried: CarriedState
    # Sleep until then before the next batch (``None``: decide again at once).
    deferral: Deferral | None = None
    # Something was sent: an empty quota is worth asking the provider about again.
    sent_something: bool = False
    # The breaker paused the campaign with this event (counted by a metric).
    breaker_tripped: bool = False


# What follows from one batch outcome.
Rule = Callable[[CarriedState, SendBatchResult, datetime, Snapshot], Transition]


def after_transient(carried: CarriedState, error: str, now: datetime, limits: Limits) -> Transition:
    """One more transient error: retry after the delay, or pause at the breaker's threshold."""
    errors = carried.consecutive_transient_errors + 1
    counted = replace(carried, consecutive_transient_errors=errors, last_error=error)
    if breaker_tripped(errors, limits):
        reason = f"circuit breaker: {errors} consecutive transient errors (last: {error})"
        tripped = paused(
            replace(counted, transient_until=None),
            PauseCause.BREAKER,
            reason,
            defer_reason=DeferReason.TRANSIENT_ERROR,
        )
        return Transition(tripped, breaker_tripped=True)
    return Transition(replace(counted, transient_until=transient_retry_at(now, limits)))


def after_batch(carried: CarriedState, result: SendBatchResult, now: datetime) -> Transition:
    """The state and deferral after a batch ended with ``result`` (whose snapshot is the
    campaign as the batch left it: its limits and counts)."""
    if result.snapshot.pending == 0 and result.outcome != SendOutcome.TRANSIENT:
        return Transition(carried)  # nothing left: the loop finishes the campaign
    sent_something = result.sent > 0
    if sent_something:
        waited = carried.last_error == OLD_ENGINE_RUNNING
        carried = replace(
            carried, consecutive_transient_errors=0, last_error="" if waited else carried.last_error
        )
    transition = _OUTCOMES[result.outcome](carried, result, now, result.snapshot)
    return replace(transition, sent_something=sent_something)


def _rate_limited(
    carried: CarriedState, result: SendBatchResult, now: datetime, snapshot: Snapshot
) -> Transition:
    return Transition(carried, rate_deferral(now, snapshot.limits))


def _domain_paced(
    carried: CarriedState, result: SendBatchResult, now: datetime, snapshot: Snapshot
) -> Transition:
    # Only recipients of domains paced this minute are left: a rate deferral to the
    # minute's end (MAILER_DOMAIN_RATE_PER_MINUTE).
    until = result.retry_at or now + PACING_RECHECK
    return Transition(carried, Deferral(DOMAIN_PACING_REASON, until))


def _transient(
    carried: CarriedState, result: SendBatchResult, now: datetime, snapshot: Snapshot
) -> Transition:
    return after_transient(carried, result.error, now, snapshot.limits)


def _recipients_waiting(
    carried: CarriedState, result: SendBatchResult, now: datetime, snapshot: Snapshot
) -> Transition:
    # Only recipients waiting for their 4xx retry are left: sleep until the first.
    until = result.retry_at or transient_retry_at(now, snapshot.limits)
    return Transition(replace(carried, transient_until=until))


def _pause_for(cause: PauseCause, wording: str) -> Rule:
    """The campaign itself is refused (535, a refused sender, a run of 5xx at DATA): pause
    with the server's words, and keep them as the last error."""

    def pause(
        carried: CarriedState, result: SendBatchResult, now: datetime, snapshot: Snapshot
    ) -> Transition:
        reason = f"{wording}: {result.error}"
        return Transition(replace(paused(carried, cause, reason), last_error=result.error))

    return pause


def _blocked(
    carried: CarriedState, result: SendBatchResult, now: datetime, snapshot: Snapshot
) -> Transition:
    # Quota or the daily allowance ran out under the lock. If the gates (on the batch's
    # snapshot) already say why, they will defer; if not, a race: look again shortly.
    if evaluate_gates(now, snapshot, carried.transient_until) is None:
        return Transition(carried, Deferral(DeferReason.QUOTA_EXHAUSTED, now + BLOCKED_RECHECK))
    return Transition(carried)


def _old_engine(
    carried: CarriedState, result: SendBatchResult, now: datetime, snapshot: Snapshot
) -> Transition:
    # Not an error of ours: the breaker does not count it; the row says why it waits.
    deferral = Deferral(DeferReason.TRANSIENT_ERROR, now + OLD_ENGINE_RECHECK)
    return Transition(replace(carried, last_error=OLD_ENGINE_RUNNING), deferral)


def _decide_again(
    carried: CarriedState, result: SendBatchResult, now: datetime, snapshot: Snapshot
) -> Transition:
    # COMPLETED, STOPPED (a pause or cancel the loop honours), STALE (the attempt ran in
    # another hour than planned): the gates decide at once.
    return Transition(carried)


# Every batch outcome and what follows from it: one table.
_OUTCOMES: dict[SendOutcome, Rule] = {
    SendOutcome.COMPLETED: _decide_again,
    SendOutcome.STOPPED: _decide_again,
    SendOutcome.STALE: _decide_again,
    SendOutcome.RATE_LIMITED: _rate_limited,
    SendOutcome.DOMAIN_PACED: _domain_paced,
    SendOutcome.TRANSIENT: _transient,
    SendOutcome.RECIPIENTS_WAITING: _recipients_waiting,
    SendOutcome.CONFIGURATION: _pause_for(PauseCause.CONFIGURATION, "configuration error"),
    SendOutcome.SERVER_REFUSED: _pause_for(PauseCause.SERVER_REFUSED, "refused by the server"),
    SendOutcome.BLOCKED: _blocked,
    SendOutcome.OLD_ENGINE: _old_engine,
}

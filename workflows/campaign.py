"""CampaignWorkflow: one long-running workflow per campaign (docs/architecture.md).

The loop: wait while paused; evaluate the gates (working hours, quota, daily limit, the
transient-error delay) and sleep durably until the first blocking one opens, waking early on
any signal; otherwise send one batch; count transient errors towards the circuit breaker;
finish when nothing is pending. Every state change is mirrored into the seed's tables (an
activity), the search attributes and the Web UI's details.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.interface import MailerActivityInterface
    from mailer.core.start_times import start_time_problem
    from workflows.contracts import (
        CampaignInput,
        CampaignResult,
        CarriedState,
        Progress,
        RecordStateInput,
        RecordStateResult,
        RescheduleInput,
        SendBatchInput,
        SendBatchResult,
        Snapshot,
        SnapshotInput,
        SnapshotResult,
        StartCampaignInput,
        StartCampaignResult,
    )
    from workflows.gates import Deferral, batch_allowance, evaluate_gates, reads_after_waking
    from workflows.search_attributes import (
        MAILER_DEFER_REASON,
        MAILER_DEFERRED_UNTIL,
        MAILER_SENT,
        MAILER_STATUS,
    )
    from workflows.states import (
        CAMPAIGN_REFUSED,
        FINAL_WORKFLOW_STATES,
        CampaignStatus,
        DeferReason,
        QueueStatus,
        Signal,
        WorkflowState,
    )
    from workflows.summaries import (
        batch_summary,
        record_summary,
        scheduled_summary,
        sleep_summary,
    )
    from workflows.transitions import (
        PAUSED_BY_OPERATOR,
        PAUSED_IN_DATABASE,
        PauseCause,
        Request,
        Transition,
        after_batch,
        after_transient,
        cleared,
        paused,
        paused_by_operator,
        stronger,
    )

WORKFLOW_ID_PREFIX = "campaign-"
# Counters through the SDK's workflow meter (not emitted while a history replays).
# The workflow's counters (replay-safe: counted once, not again on replay). The worker
# creates their series at 0 with these same names and descriptions (mailer.runtime.counters).
DEFERRALS_METRIC = ("mailer_deferrals", "Campaign deferrals, by defer reason")
BREAKER_TRIPS_METRIC = ("mailer_breaker_trips", "Campaigns paused by the circuit breaker")


class Waiting(enum.Enum):
    NOTHING = "nothing"
    SLEEP = "sleep"  # deferred: resume and wake act
    PAUSED = "paused"  # paused: resume acts
    SCHEDULED = "scheduled"  # a scheduled start not reached: only reschedule moves it


def signal_acts(signal: Signal, waiting: Waiting) -> bool:
    """Whether ``resume`` or ``wake`` acts now. Each is used where the loop waits; one that
    arrives while an activity runs is dropped, not kept to undo the next breaker or 535
    pause or skip the next sleep."""
    if signal == Signal.WAKE:
        return waiting == Waiting.SLEEP
    return waiting in (Waiting.SLEEP, Waiting.PAUSED)


# Patches (docs/engine.md): campaigns started by older code keep their path on replay.
# A rate window or a retry wait that ran out goes straight to the gates and the batch.
WAKE_WITHOUT_READING = "wake-without-reading"
# The loop's records and plain reads run as local activities: no task through the server.
LOCAL_LEDGER = "local-ledger"

DB_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))
LEDGER_TIMEOUT = timedelta(minutes=1)


def workflow_id_for(campaign_id: str) -> str:
    return f"{WORKFLOW_ID_PREFIX}{campaign_id}"


CAMPAIGN_WORKFLOW = "CampaignWorkflow"


@workflow.defn(name=CAMPAIGN_WORKFLOW)
class CampaignWorkflow:
    @workflow.init
    def __init__(self, request: CampaignInput) -> None:
        self._campaign_id = request.campaign_id
        self._state: WorkflowState = WorkflowState.STARTING
        self._deferral: Deferral | None = None
        self._carried = CarriedState()
        self._snapshot: Snapshot | None = None
        # The snapshot is the one from before a sleep that ran out (gates.reads_after_waking):
        # a gate that blocks on it is read again before the campaign sleeps on it.
        self._snapshot_from_before_sleep = False
        # The operator's request the loop has not acted on yet (one: the strongest).
        self._request = Request.NONE
        # Whether the quota was synced since the last batch that sent something: an empty
        # quota is checked with the provider once before the campaign defers on it.
        self._quota_synced = False
        self._published: dict[str, object] = {}
        # Where the loop waits for a signal now: resume and wake act only there.
        self._waiting = Waiting.NOTHING
        self._batch_running = False
        # A scheduled start not reached yet (None once it fired, or without one); the time
        # the tables show for it, so a reschedule is answered once it is written there.
        # Set here, not in run: a reschedule sent with the start is validated before run.
        self._start_at = request.start_at if request.carried is None else None
        self._start_at_recorded: datetime | None = None

    # --- signals and query -------------------------------------------------------------

    @workflow.signal(
        description="Pause: stop sending within one message, until resumed (no input)."
    )
    def pause(self) -> None:
        """Stop sending (within one message) until resumed."""
        if self._state in FINAL_WORKFLOW_STATES or self._carried.paused:
            workflow.logger.info("campaign %s: pause ignored (%s)", self._campaign_id, self._state)
            return
        self._request = stronger(self._request, Request.PAUSE)

    @workflow.signal(
        description="Resume: clear a pause or a deferral and the error count; go on now (no input)."
    )
    def resume(self) -> None:
        """Clear a pause or deferral and the error count; re-evaluate at once.

        Acts only while the campaign waits (deferred or paused): a resume that arrives while
        an activity runs is not kept to undo a later pause or skip a later sleep."""
        if not signal_acts(Signal.RESUME, self._waiting):
            workflow.logger.info("campaign %s: resume ignored (%s)", self._campaign_id, self._state)
            return
        self._request = stronger(self._request, Request.RESUME)

    @workflow.signal(
        description="Cancel: stop for good; pending recipients stay pending (no input)."
    )
    def cancel(self) -> None:
        """Stop for good; pending recipients stay pending."""
        if self._state in FINAL_WORKFLOW_STATES:
            workflow.logger.info("campaign %s: cancel ignored (%s)", self._campaign_id, self._state)
            return
        self._request = stronger(self._request, Request.CANCEL)

    @workflow.signal(
        description="Wake: re-check a deferral now (the quota sync sends it; no input)."
    )
    def wake(self) -> None:
        """Re-evaluate a deferral now (sent by the quota sync when quota comes back)."""
        if not signal_acts(Signal.WAKE, self._waiting):
            return
        self._request = stronger(self._request, Request.WAKE)

    # --- acknowledged operations (Temporal Updates: mailer.client, the CLI) ----------------

    @workflow.update(description="Pause and answer with the progress once paused.")
    async def pause_campaign(self) -> Progress:
        """Pause and answer once paused (within one message while a batch sends)."""
        self._request = stronger(self._request, Request.PAUSE)
        await workflow.wait_condition(
            lambda: self._state == WorkflowState.PAUSED or self._state in FINAL_WORKFLOW_STATES
        )
        return self.progress()

    @pause_campaign.validator
    def _may_pause(self) -> None:
        if self._state in FINAL_WORKFLOW_STATES or self._carried.paused:
            raise ApplicationError(f"it is {self._state}")

    @workflow.update(description="Resume and answer with the progress once it goes on.")
    async def resume_campaign(self) -> Progress:
        """Clear the pause or deferral and answer once the campaign goes on."""
        self._request = stronger(self._request, Request.RESUME)
        # Answered once the loop has decided what comes next: a batch, a new deferral (still
        # outside working hours, say), or the end.
        await workflow.wait_condition(
            lambda: (
                self._request != Request.RESUME
                and (
                    self._waiting != Waiting.NOTHING
                    or self._batch_running
                    or self._state in FINAL_WORKFLOW_STATES
                )
            )
        )
        return self.progress()

    @resume_campaign.validator
    def _may_resume(self) -> None:
        if not signal_acts(Signal.RESUME, self._waiting):
            raise ApplicationError(f"it is {self._state}: neither paused nor deferred")

    @workflow.update(description="Cancel and answer with the progress once cancelled.")
    async def cancel_campaign(self) -> Progress:
        """Stop for good and answer once cancelled; pending recipients stay pending."""
        self._request = stronger(self._request, Request.CANCEL)
        await workflow.wait_condition(lambda: self._state in FINAL_WORKFLOW_STATES)
        return self.progress()

    @cancel_campaign.validator
    def _may_cancel(self) -> None:
        if self._state in FINAL_WORKFLOW_STATES:
            raise ApplicationError(f"it is {self._state}")

    @workflow.update(
        description='Move a scheduled start (input: {"start_at": ISO time}); answers once moved.'
    )
    async def reschedule(self, request: RescheduleInput) -> Progress:
        """Move the start of a campaign that has not started yet (paused or not); a time
        now (or within the minute's grace before it) starts it at once."""
        self._start_at = request.start_at
        await workflow.wait_condition(
            lambda: (
                self._start_at_recorded == request.start_at
                or self._start_at is None
                or self._state in FINAL_WORKFLOW_STATES
            )
        )
        return self.progress()

    @reschedule.validator
    def _may_reschedule(self, request: RescheduleInput) -> None:
        if self._start_at is None:
            raise ApplicationError(f"it has no scheduled start to move (it is {self._state})")
        problem = start_time_problem(request.start_at, workflow.now())
        if problem is not None:
            raise ApplicationError(problem)

    @workflow.query(
        description="State, defer reason and until, pause reason, sent, failed, pending."
    )
    def progress(self) -> Progress:
        snapshot = self._snapshot
        defer_reason: str
        if self._deferral is not None:
            defer_reason = self._deferral.reason
        else:
            defer_reason = self._carried.paused_defer_reason if self._carried.paused else ""
        return Progress(
            campaign_id=self._campaign_id,
            state=self._state,
            defer_reason=defer_reason,
            deferred_until=self._deferral.until if self._deferral else None,
            pause_reason=self._carried.pause_reason,
            last_error=self._carried.last_error,
            consecutive_transient_errors=self._carried.consecutive_transient_errors,
            pending=snapshot.pending if snapshot else 0,
            sent=snapshot.sent if snapshot else 0,
            failed=snapshot.failed if snapshot else 0,
            runs=self._carried.runs,
            scheduled_for=self._start_at,
        )

    # --- the loop ------------------------------------------------------------------------

    @workflow.run
    async def run(self, request: CampaignInput) -> CampaignResult:
        try:
            return await self._run(request)
        except asyncio.CancelledError:
            # Cancelled through Temporal (the Web UI, `temporal workflow cancel`): record it
            # in the tables and the search attributes, then end as cancelled. (Activities
            # still run once the cancellation has been caught.)
            workflow.logger.warning("campaign %s: cancelled through Temporal", self._campaign_id)
            if self._snapshot is not None:
                await self._finish(WorkflowState.CANCELLED)
            raise

    async def _run(self, request: CampaignInput) -> CampaignResult:
        self._campaign_id = request.campaign_id
        if request.carried is None and request.start_at is not None:
            self._snapshot = await self._start(scheduled_for=request.start_at)
            finished = await self._wait_for_start_time(request.start_at)
            if finished is not None:
                return finished
            self._snapshot = await self._start(counted=True)
        elif request.carried is None:
            self._snapshot = await self._start()
        else:
            self._carried = request.carried
            self._snapshot = (await self._load_snapshot(sync_quota=False)).snapshot
        await self._publish(WorkflowState.PAUSED if self._carried.paused else WorkflowState.SENDING)

        while True:
            finished = await self._turn()
            if finished is not None:
                return finished

    async def _turn(self) -> CampaignResult | None:
        """One turn of the loop: honour requests and the table, then sleep or send a batch.
        Returns the result once the campaign is finished."""
        if self._request == Request.CANCEL:
            return await self._finish(WorkflowState.CANCELLED)
        finished_in_table = self._honour_the_table()
        if finished_in_table is not None:
            return await self._finish(finished_in_table)
        if self._request == Request.PAUSE:
            self._request = Request.NONE
            self._carried = paused(self._carried, PauseCause.OPERATOR, PAUSED_BY_OPERATOR)
        if self._carried.paused:
            await self._wait_while_paused()
            return None
        if self._should_continue_as_new():
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(
                CampaignInput(
                    self._campaign_id, replace(self._carried, runs=self._carried.runs + 1)
                )
            )
        snapshot = self._current_snapshot()
        if snapshot.pending == 0:
            return await self._finish(WorkflowState.SENT)
        await self._send_or_sleep(workflow.now(), snapshot)
        return None

    async def _send_or_sleep(self, now: datetime, snapshot: Snapshot) -> None:
        """Sleep on a held deferral or the first gate that blocks; otherwise send a batch
        (and sleep on what follows from it)."""
        deferral = self._held_deferral(now)
        if deferral is None:
            deferral = evaluate_gates(now, snapshot, self._carried.transient_until)
            if await self._synced_an_empty_quota(deferral):
                return
            if deferral is not None and self._snapshot_from_before_sleep:
                # Decided on the campaign as it was before the sleep: read it before
                # sleeping on that, and let the gates decide again.
                self._snapshot = (await self._load_snapshot(sync_quota=False)).snapshot
                return
            if deferral is None:
                deferral = await self._send_batch(now, batch_allowance(snapshot))
        if deferral is not None:
            await self._sleep(deferral)

    async def _synced_an_empty_quota(self, deferral: Deferral | None) -> bool:
        """An empty quota is checked with the provider once before the campaign defers on
        it; whether it was (then the gates decide again)."""
        if deferral is None or deferral.reason != DeferReason.QUOTA_EXHAUSTED:
            return False
        if self._quota_synced:
            return False
        self._quota_synced = True
        self._snapshot = (await self._load_snapshot(sync_quota=True)).snapshot
        return True

    def _held_deferral(self, now: datetime) -> Deferral | None:
        """A deferral the campaign was taken over with, while it lasts."""
        until = self._carried.held_until
        if until is None:
            return None
        if now < until:
            return Deferral(DeferReason(self._carried.held_reason), until)
        self._carried = replace(self._carried, held_reason="", held_until=None)
        return None

    def _honour_the_table(self) -> WorkflowState | None:
        """An operator's SQL wins: ``paused`` in mailer_campaign pauses the campaign (the
        playbook's runbook); ``cancelled`` ends it. Returns the state to finish in, if any."""
        status = self._current_snapshot().campaign_status
        if status == CampaignStatus.CANCELLED:
            return WorkflowState.CANCELLED
        if status == CampaignStatus.SENT:
            return WorkflowState.SENT
        if status == CampaignStatus.PAUSED and not self._carried.paused:
            workflow.logger.warning("campaign %s: paused in the database", self._campaign_id)
            self._carried = paused(self._carried, PauseCause.DATABASE, PAUSED_IN_DATABASE)
        return None

    def _current_snapshot(self) -> Snapshot:
        assert self._snapshot is not None
        return self._snapshot

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        limit = self._current_snapshot().limits.continue_as_new_events
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= limit

    async def _start(
        self, *, scheduled_for: datetime | None = None, counted: bool = False
    ) -> Snapshot:
        if scheduled_for is not None:
            summary = "schedule: check the campaign, count the start"
        elif counted:
            summary = "start: claim the campaign (its start was counted when scheduled)"
        else:
            summary = "start: claim the campaign, check the start limits"
        try:
            started: StartCampaignResult = await self._ledger(
                MailerActivityInterface.start_campaign,
                StartCampaignInput(
                    self._campaign_id, workflow.now(), scheduled_for=scheduled_for, counted=counted
                ),
                summary=summary,
                retry_policy=RetryPolicy(
                    maximum_interval=timedelta(seconds=30),
                    non_retryable_error_types=[CAMPAIGN_REFUSED],
                ),
            )
        except ActivityError as error:
            cause = error.cause
            if isinstance(cause, ApplicationError) and cause.type == CAMPAIGN_REFUSED:
                workflow.logger.info(
                    "campaign %s: start refused: %s", self._campaign_id, cause.message
                )
                raise ApplicationError(
                    f"campaign not started: {cause.message}",
                    type=CAMPAIGN_REFUSED,
                    non_retryable=True,
                ) from None
            raise
        if scheduled_for is not None:
            workflow.logger.info(
                "campaign %s: scheduled for %s", self._campaign_id, scheduled_for.isoformat()
            )
        else:
            workflow.logger.info("campaign %s: started", self._campaign_id)
        return started.snapshot

    async def _wait_for_start_time(self, scheduled_for: datetime) -> CampaignResult | None:
        """A scheduled start: wait, unstarted (``ready`` in the tables, the time in the queue
        row's ``deferred_until``), until the start time; pause, resume, cancel and
        reschedule act meanwhile. Returns the result if it ended before it started."""
        # What the scheduling activity wrote (``scheduled_for``): the loop records only what
        # changes since (a reschedule, a pause).
        recorded = (CampaignStatus.READY, scheduled_for)
        while self._start_at is not None:
            start_at = self._start_at
            if self._request == Request.CANCEL:
                return await self._finish(WorkflowState.CANCELLED)
            if self._request == Request.PAUSE:
                self._carried = paused(self._carried, PauseCause.OPERATOR, PAUSED_BY_OPERATOR)
            self._request = Request.NONE  # a resume or wake that found it waiting, unpaused
            status = CampaignStatus.PAUSED if self._carried.paused else CampaignStatus.READY
            if (status, start_at) != recorded:
                if not await self._record_schedule(status, start_at):
                    return await self._taken_from_the_schedule()
                recorded = (status, start_at)
            self._start_at_recorded = start_at
            if self._carried.paused:
                await self._paused_before_start(start_at)
            elif workflow.now() >= start_at:
                self._start_at = None
            else:
                await self._sleep_until_start(start_at)
        return None

    async def _record_schedule(self, status: CampaignStatus, start_at: datetime) -> bool:
        return await self._record(
            status,
            QueueStatus.PENDING,
            deferred_until=start_at,
            expected=(CampaignStatus.READY, CampaignStatus.PAUSED),
        )

    async def _taken_from_the_schedule(self) -> CampaignResult | None:
        """The CRM changed a scheduled campaign's row: ``cancelled`` ends it; anything else
        (``sending``) starts it now."""
        row = self._current_snapshot().campaign_status
        if row == CampaignStatus.CANCELLED:
            return await self._finish(WorkflowState.CANCELLED)
        workflow.logger.info("campaign %s: %s in the tables", self._campaign_id, row)
        self._start_at = None
        self._carried = cleared(self._carried)
        return None

    async def _paused_before_start(self, start_at: datetime) -> None:
        """Paused before the start: nothing happens at the start time; resume (then the time
        counts again), cancel or a new time act."""
        await self._publish(WorkflowState.PAUSED)
        workflow.logger.info("campaign %s: paused before its start", self._campaign_id)
        self._waiting = Waiting.PAUSED
        await workflow.wait_condition(
            lambda: self._request in (Request.RESUME, Request.CANCEL) or self._start_at != start_at
        )
        self._waiting = Waiting.NOTHING
        if self._request == Request.RESUME:
            self._request = Request.NONE
            self._carried = cleared(self._carried)
            workflow.logger.info("campaign %s: resumed", self._campaign_id)

    async def _sleep_until_start(self, start_at: datetime) -> None:
        """The durable timer to the start, cut short by pause, cancel or a new time."""
        await self._publish(WorkflowState.SCHEDULED)
        now = workflow.now()
        self._waiting = Waiting.SCHEDULED
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._request >= Request.PAUSE or self._start_at != start_at,
                timeout=start_at - now,
                timeout_summary=scheduled_summary(
                    start_at, now, self._current_snapshot().limits.timezone
                ),
            )
        self._waiting = Waiting.NOTHING

    async def _send_batch(self, now: datetime, allowance: int) -> Deferral | None:
        """Run one batch (cancelled by pause/cancel); returns a deferral if one follows."""
        await self._publish(WorkflowState.SENDING)
        handle = workflow.start_activity_method(
            MailerActivityInterface.send_batch,
            SendBatchInput(self._campaign_id, now, allowance),
            summary=batch_summary(allowance),
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=timedelta(
                seconds=self._current_snapshot().limits.send_heartbeat_timeout_seconds
            ),
            # Bounded: an error nothing classifies ends as a transient error the breaker
            # counts (visible in the tables and the UI), never as an endless retry loop.
            retry_policy=RetryPolicy(
                maximum_interval=timedelta(seconds=60),
                maximum_attempts=self._current_snapshot().limits.send_batch_max_attempts,
                non_retryable_error_types=[CAMPAIGN_REFUSED],
            ),
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        self._batch_running = True
        await workflow.wait_condition(lambda: handle.done() or self._request >= Request.PAUSE)
        self._batch_running = False
        if not handle.done():
            handle.cancel()
        try:
            result: SendBatchResult = await handle
        except ActivityError as error:
            cause = error.cause
            if isinstance(cause, ApplicationError) and cause.type == CAMPAIGN_REFUSED:
                raise
            self._snapshot = (await self._load_snapshot(sync_quota=False)).snapshot
            if not isinstance(cause, CancelledError):
                limits = self._current_snapshot().limits
                failed = f"send batch failed {limits.send_batch_max_attempts} times: {cause}"
                self._apply(after_transient(self._carried, failed, workflow.now(), limits))
            return None
        self._snapshot = result.snapshot
        self._snapshot_from_before_sleep = False
        errors_before = self._carried.consecutive_transient_errors
        deferral = self._apply(after_batch(self._carried, result, workflow.now()))
        if errors_before and not self._carried.consecutive_transient_errors:
            # Back to 0 after a success: the playbook's §1 SQL reads the count from the row.
            await self._record(
                CampaignStatus.SENDING, QueueStatus.PENDING, expected=(CampaignStatus.SENDING,)
            )
        return deferral

    def _apply(self, transition: Transition) -> Deferral | None:
        """Take the transition's state; its deferral is the caller's to sleep on."""
        self._carried = transition.carried
        if transition.sent_something:
            self._quota_synced = False
        if transition.breaker_tripped:
            workflow.metric_meter().create_counter(*BREAKER_TRIPS_METRIC).add(1)
        return transition.deferral

    async def _sleep(self, deferral: Deferral) -> None:
        """Defer until ``deferral.until``, waking early on any signal."""
        self._deferral = deferral
        recorded = await self._record(
            CampaignStatus.SENDING,
            QueueStatus.PENDING,
            defer_reason=deferral.reason,
            deferred_until=deferral.until,
            expected=(CampaignStatus.SENDING,),
        )
        if not recorded:  # an operator changed the campaign's row: the loop honours it
            self._deferral = None
            return
        await self._publish(WorkflowState.DEFERRED)
        workflow.metric_meter().create_counter(*DEFERRALS_METRIC).add(
            1, {"reason": deferral.reason.value}
        )
        workflow.logger.info(
            "campaign %s: deferred (%s) until %s",
            self._campaign_id,
            deferral.reason.value,
            deferral.until.isoformat(),
        )
        delay = max(timedelta(0), deferral.until - workflow.now())
        # A timeout means the deferral ran out: re-evaluate.
        self._waiting = Waiting.SLEEP
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                self._interrupted,
                timeout=delay,
                timeout_summary=sleep_summary(
                    deferral.reason.value,
                    deferral.until,
                    workflow.now(),
                    self._current_snapshot().limits.timezone,
                ),
            )
        self._waiting = Waiting.NOTHING
        ran_out = self._request == Request.NONE  # no signal or update cut the sleep short
        if self._request == Request.WAKE:
            self._request = Request.NONE
        if self._request == Request.RESUME:
            self._request = Request.NONE
            self._carried = cleared(self._carried)
            workflow.logger.info("campaign %s: deferral cleared by resume", self._campaign_id)
        until = self._carried.transient_until
        if until is not None and workflow.now() >= until:
            self._carried = replace(self._carried, transient_until=None)
        self._deferral = None
        if (
            ran_out
            and not reads_after_waking(deferral.reason)
            and workflow.patched(WAKE_WITHOUT_READING)
        ):
            # The batch reads the campaign for itself; a gate that blocks on the snapshot
            # from before the sleep is read again first (_send_or_sleep).
            self._snapshot_from_before_sleep = True
            return
        sync = deferral.reason == DeferReason.QUOTA_EXHAUSTED
        self._quota_synced = self._quota_synced or sync
        loaded = await self._load_snapshot(sync_quota=sync)
        self._snapshot = loaded.snapshot

    def _interrupted(self) -> bool:
        return self._request != Request.NONE

    async def _wait_while_paused(self) -> None:
        self._deferral = None
        await self._record(
            CampaignStatus.PAUSED,
            QueueStatus.PENDING,
            defer_reason=self._carried.paused_defer_reason,
            expected=(CampaignStatus.SENDING, CampaignStatus.PAUSED),
        )
        if self._current_snapshot().campaign_status != CampaignStatus.PAUSED:
            return  # cancelled or finished meanwhile: the loop honours the table
        await self._publish(WorkflowState.PAUSED)
        # An operator's pause is routine; one the campaign took itself (breaker, 535, TLS,
        # the server refusing it) needs someone: a WARNING with the reason.
        routine = paused_by_operator(self._carried)
        log = workflow.logger.info if routine else workflow.logger.warning
        log("campaign %s: paused (%s)", self._campaign_id, self._carried.pause_reason)
        self._waiting = Waiting.PAUSED
        await workflow.wait_condition(lambda: self._request in (Request.RESUME, Request.CANCEL))
        self._waiting = Waiting.NOTHING
        if self._request == Request.CANCEL:
            return
        self._request = Request.NONE
        self._deferral = None
        self._carried = cleared(self._carried)
        # Written only over the pause: a campaign cancelled meanwhile stays cancelled.
        await self._record(
            CampaignStatus.SENDING, QueueStatus.PENDING, expected=(CampaignStatus.PAUSED,)
        )
        await self._publish(WorkflowState.SENDING)
        workflow.logger.info("campaign %s: resumed", self._campaign_id)

    async def _finish(self, state: WorkflowState) -> CampaignResult:
        """Mirror the final state, answer any waiting update, and return the result."""
        self._deferral = None
        if state == WorkflowState.SENT:
            await self._record(
                CampaignStatus.SENT,
                QueueStatus.COMPLETED,
                expected=(CampaignStatus.SENDING, CampaignStatus.PAUSED),
            )
        else:
            await self._record(
                CampaignStatus.CANCELLED,
                QueueStatus.CANCELLED,
                expected=(
                    CampaignStatus.READY,
                    CampaignStatus.SENDING,
                    CampaignStatus.PAUSED,
                    CampaignStatus.CANCELLED,
                ),
            )
        await self._publish(state)
        # An update waiting for this state answers before the run closes.
        await workflow.wait_condition(workflow.all_handlers_finished)
        snapshot = self._current_snapshot()
        workflow.logger.info(
            "campaign %s: %s (sent %d, failed %d, pending %d)",
            self._campaign_id,
            state,
            snapshot.sent,
            snapshot.failed,
            snapshot.pending,
        )
        return CampaignResult(
            campaign_id=self._campaign_id,
            status=state,
            sent=snapshot.sent,
            failed=snapshot.failed,
            pending=snapshot.pending,
        )

    # --- activities and mirrors ------------------------------------------------------------

    async def _ledger(
        self,
        activity: Callable[..., Any],
        request: Any,
        *,
        summary: str,
        retry_policy: RetryPolicy,
        local: bool = False,
    ) -> Any:
        """One of the ledger's short activities (start, read, record).

        A ``local`` one (a record, a read without a quota sync: one statement or two, each
        safe to repeat) runs in this worker as part of the workflow task: one marker in the
        history instead of an activity's three events and a workflow task more, and no
        round trip through the server's task queue (docs/engine.md)."""
        if local and workflow.patched(LOCAL_LEDGER):
            return await workflow.execute_local_activity_method(
                activity,
                request,
                summary=summary,
                start_to_close_timeout=LEDGER_TIMEOUT,
                retry_policy=retry_policy,
            )
        return await workflow.execute_activity_method(
            activity,
            request,
            summary=summary,
            start_to_close_timeout=LEDGER_TIMEOUT,
            retry_policy=retry_policy,
        )

    async def _load_snapshot(self, *, sync_quota: bool) -> SnapshotResult:
        result: SnapshotResult = await self._ledger(
            MailerActivityInterface.load_snapshot,
            SnapshotInput(self._campaign_id, workflow.now(), sync_quota),
            summary="sync the quota, read the campaign" if sync_quota else "read the campaign",
            retry_policy=DB_RETRY,
            # The sync asks smtp.bz over HTTP: it stays an activity of its own.
            local=not sync_quota,
        )
        self._snapshot_from_before_sleep = False
        return result

    async def _record(
        self,
        campaign_status: CampaignStatus,
        queue_status: QueueStatus,
        *,
        defer_reason: str = "",
        deferred_until: datetime | None = None,
        expected: tuple[CampaignStatus, ...] = (),
    ) -> bool:
        """Mirror into the tables, compare-and-set on ``expected``; whether it was written."""
        result: RecordStateResult = await self._ledger(
            MailerActivityInterface.record_state,
            RecordStateInput(
                campaign_id=self._campaign_id,
                now=workflow.now(),
                campaign_status=campaign_status,
                queue_status=queue_status,
                defer_reason=defer_reason,
                deferred_until=deferred_until,
                consecutive_transient_errors=self._carried.consecutive_transient_errors,
                last_error=self._carried.last_error or self._carried.pause_reason,
                expected_statuses=list(expected),
            ),
            summary=record_summary(campaign_status, defer_reason, self._carried.pause_reason),
            retry_policy=DB_RETRY,
            # A local activity's summary is not carried into its marker, so the Web UI shows
            # it by type only. A deferral's reason is on the timer beside it; a pause has no
            # timer, and its reason (the breaker's, the server's) is what the operator opens
            # the timeline for: that record stays an activity. Pauses are rare.
            local=campaign_status != CampaignStatus.PAUSED,
        )
        self._snapshot = result.snapshot
        self._snapshot_from_before_sleep = False
        return result.applied

    async def _publish(self, state: WorkflowState) -> None:
        """Search attributes and the UI summary, upserted only when they change."""
        self._state = state
        snapshot = self._current_snapshot()
        deferral = self._deferral if state == WorkflowState.DEFERRED else None
        if deferral is not None:
            reason = deferral.reason.value
        elif state == WorkflowState.PAUSED:
            reason = self._carried.paused_defer_reason
        else:
            reason = ""
        # A scheduled start's time shows where a deferral's end does: lists sort and filter
        # on it alike.
        until = deferral.until if deferral else None
        if state == WorkflowState.SCHEDULED:
            until = self._start_at
        wanted: dict[str, object] = {
            MAILER_STATUS.name: state,
            MAILER_DEFER_REASON.name: reason,
            MAILER_DEFERRED_UNTIL.name: until,
            MAILER_SENT.name: snapshot.sent,
        }
        if wanted != self._published:
            updates: list[SearchAttributeUpdate[Any]] = [
                MAILER_STATUS.value_set(state),
                MAILER_DEFER_REASON.value_set(reason),
                MAILER_SENT.value_set(snapshot.sent),
                MAILER_DEFERRED_UNTIL.value_set(until)
                if until is not None
                else MAILER_DEFERRED_UNTIL.value_unset(),
            ]
            workflow.upsert_search_attributes(updates)
            self._published = wanted
        workflow.set_current_details(self._details(state, snapshot, deferral))

    def _details(self, state: WorkflowState, snapshot: Snapshot, deferral: Deferral | None) -> str:
        total = snapshot.pending + snapshot.sent + snapshot.failed
        lines = [
            f"**Campaign** `{self._campaign_id}`",
            f"**State:** {state}",
            f"**Progress:** {snapshot.sent} sent, {snapshot.failed} failed, "
            f"{snapshot.pending} pending of {total}",
        ]
        if self._start_at is not None:
            lines.append(f"**Scheduled:** starts at {self._start_at.isoformat()}")
        elif deferral is not None:
            lines.append(
                f"**Deferred:** `{deferral.reason.value}` until {deferral.until.isoformat()}"
            )
        if self._carried.pause_reason and state == WorkflowState.PAUSED:
            lines.append(f"**Paused:** {self._carried.pause_reason}")
        if self._carried.consecutive_transient_errors:
            lines.append(
                f"**Consecutive transient errors:** {self._carried.consecutive_transient_errors}"
            )
        return "\n\n".join(lines)

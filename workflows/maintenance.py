"""Scheduled work (Temporal Schedules instead of Celery beat).

- The hourly quota sync asks smtp.bz for the quota; when there is quota again, it wakes the
  campaigns deferred on ``quota_exhausted`` so they do not wait for their own re-check.
- The dispatcher (one long-running workflow) carries out what the CRM asks through the
  tables within seconds: a ``pending`` queue row of a ``ready`` campaign starts it, a
  campaign set to ``paused``, back to ``sending`` or to ``cancelled`` is paused, resumed or
  cancelled (workflows/requests.py decides, migration 0006's trigger records the requests).
- The 5-minute reconcile repairs drift between the database and Temporal: a campaign the
  database says is sending (or paused) whose workflow is gone is started again (paused ones
  stay paused, with their reason), a queue row left ``processing`` with no live run goes
  back to ``pending``, as the playbook's manual SQL did, and a deferred or breaker-paused
  campaign whose queue row an operator cleared with the playbook's "resume" SQL is resumed.
  A campaign cancelled (from the Web UI, the CLI or SQL) is never restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.interface import MailerActivityInterface
    from workflows.campaign import CampaignWorkflow, workflow_id_for
    from workflows.contracts import (
        DispatchInput,
        QuotaSyncResult,
        ReconcileInput,
        ReconcileResult,
        SyncQuotaInput,
    )

QUOTA_SYNC_WORKFLOW_ID = "mailer-quota-sync"
QUOTA_SYNC_SCHEDULE_ID = "mailer-quota-sync"
QUOTA_SYNC_EVERY = timedelta(hours=1)


@workflow.defn(name="QuotaSyncWorkflow")
class QuotaSyncWorkflow:
    @workflow.run
    async def run(self) -> QuotaSyncResult:
        result = await workflow.execute_activity_method(
            MailerActivityInterface.sync_quota,
            SyncQuotaInput(workflow.now()),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        woken = 0
        if not result.error and result.emails_available > 0:
            for campaign_id in result.deferred_on_quota or []:
                handle = workflow.get_external_workflow_handle(workflow_id_for(campaign_id))
                try:
                    await handle.signal(CampaignWorkflow.wake)
                    woken += 1
                except Exception:  # the campaign's run ended meanwhile: nothing to wake
                    workflow.logger.info("quota sync: campaign %s not running", campaign_id)
        workflow.logger.info(
            "quota sync: %d available%s, woke %d campaigns",
            result.emails_available,
            f" (error: {result.error})" if result.error else "",
            woken,
        )
        return QuotaSyncResult(result.emails_available, result.error, woken)


RECONCILE_WORKFLOW_ID = "mailer-reconcile"
RECONCILE_SCHEDULE_ID = "mailer-reconcile"
RECONCILE_EVERY = timedelta(minutes=5)


@workflow.defn(name="ReconcileWorkflow")
class ReconcileWorkflow:
    """Every 5 minutes: repair drift between the seed's tables and Temporal."""

    @workflow.run
    async def run(self) -> ReconcileResult:
        result = await workflow.execute_activity_method(
            MailerActivityInterface.reconcile,
            ReconcileInput(workflow.now()),
            start_to_close_timeout=timedelta(minutes=4),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        if result.restarted or result.unstuck or result.resumed:
            workflow.logger.info(
                "reconcile: restarted %d campaigns, unstuck %d queue rows, resumed %d",
                len(result.restarted),
                len(result.unstuck),
                len(result.resumed),
            )
        return result


DISPATCHER_WORKFLOW_PREFIX = "mailer-dispatcher-"
# How often the dispatcher looks at the requests without being woken: the old beat's 30 s,
# with margin. Workers LISTEN for the requests' trigger's NOTIFY and wake it at once
# (mailer/runtime/request_listener.py); this turn is what is left when nobody listens.
DISPATCH_EVERY = timedelta(seconds=10)
# Recorded from the first turn that waits for a wake instead of a plain timer.
WAKE_ON_NOTIFY = "dispatch-wake-on-notify"
# Turns per run before continue-as-new: each idle turn is an activity and a timer (~8
# history events), so a run stays far under the history limits.
DISPATCH_TURNS_PER_RUN = 250


def dispatcher_workflow_id(task_queue: str) -> str:
    """One dispatcher per task queue (a deployment has one; tests have one each)."""
    return f"{DISPATCHER_WORKFLOW_PREFIX}{task_queue}"


@dataclass
class DispatcherInput:
    turns: int = 0  # carried across continue-as-new, for the Web UI's details


@workflow.defn(name="DispatcherWorkflow")
class DispatcherWorkflow:
    """The CRM's writes to the tables, carried out within seconds.

    Why a long-running workflow and not a Schedule: a Schedule every few seconds leaves a
    closed workflow per tick in visibility (17,000 a day); one run that loops, sleeps
    durably and continues as new costs one activity and one timer per turn and nothing per
    idle campaign (a turn reads only the request table, usually empty, by its primary key).
    Between turns it sleeps ``DISPATCH_EVERY`` unless :meth:`wake` comes first.
    """

    def __init__(self) -> None:
        self._woken = False

    @workflow.signal
    def wake(self) -> None:
        """A request was written (a worker heard the trigger's NOTIFY): take a turn now.

        A wake during a turn is kept, so the write it announces is never left to the timer.
        """
        self._woken = True

    @workflow.run
    async def run(self, request: DispatcherInput) -> None:
        turns = request.turns
        for _ in range(DISPATCH_TURNS_PER_RUN):
            self._woken = False
            result = await workflow.execute_activity_method(
                MailerActivityInterface.dispatch,
                DispatchInput(workflow.now()),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
            )
            turns += 1
            acted = result.started + result.paused + result.resumed + result.cancelled
            if acted:
                workflow.logger.info("dispatcher: acted on %d campaigns", len(acted))
            if not result.more:
                await self._rest()
        workflow.continue_as_new(DispatcherInput(turns))

    async def _rest(self) -> None:
        """Until the next turn: ``DISPATCH_EVERY``, or less if woken."""
        if not workflow.patched(WAKE_ON_NOTIFY):
            await workflow.sleep(DISPATCH_EVERY)  # as runs begun before the wake recorded
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await workflow.wait_condition(lambda: self._woken, timeout=DISPATCH_EVERY)

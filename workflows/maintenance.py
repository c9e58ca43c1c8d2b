"""Scheduled work (Temporal Schedules instead of Celery beat).

- The hourly quota sync asks smtp.bz for the quota; when there is quota again, it wakes the
  campaigns deferred on ``quota_exhausted`` so they do not wait for their own re-check.
- The 5-minute reconcile repairs drift between the database and Temporal: a campaign the
  database says is sending (or paused) whose workflow is gone is started again (paused ones
  stay paused, with their reason), a queue row left ``processing`` with no live run goes
  back to ``pending``, as the playbook's manual SQL did, and a deferred or breaker-paused
  campaign whose queue row an operator cleared with the playbook's "resume" SQL is resumed.
  A campaign cancelled (from the Web UI, the CLI or SQL) is never restarted.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.interface import MailerActivityInterface
    from workflows.campaign import CampaignWorkflow, workflow_id_for
    from workflows.contracts import (
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

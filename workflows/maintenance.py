"""Scheduled work (Temporal Schedules instead of Celery beat): the hourly quota sync.

The sync asks smtp.bz for the quota; when there is quota again, it wakes the campaigns
deferred on ``quota_exhausted`` so they do not wait for their own hourly re-check.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.campaign import workflow_id_for
    from workflows.contracts import QuotaSyncResult, SyncQuotaInput, SyncQuotaResult

QUOTA_SYNC_WORKFLOW_ID = "mailer-quota-sync"
QUOTA_SYNC_SCHEDULE_ID = "mailer-quota-sync"
QUOTA_SYNC_EVERY = timedelta(hours=1)


@workflow.defn(name="QuotaSyncWorkflow")
class QuotaSyncWorkflow:
    @workflow.run
    async def run(self) -> QuotaSyncResult:
        result: SyncQuotaResult = await workflow.execute_activity(
            "sync_quota",
            SyncQuotaInput(workflow.now()),
            result_type=SyncQuotaResult,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        woken = 0
        if not result.error and result.emails_available > 0:
            for campaign_id in result.deferred_on_quota or []:
                handle = workflow.get_external_workflow_handle(workflow_id_for(campaign_id))
                try:
                    await handle.signal("wake")
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

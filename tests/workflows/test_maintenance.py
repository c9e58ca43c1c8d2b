"""The scheduled quota sync (dev server: the time-skipping server has no schedules)."""

from __future__ import annotations

import contextlib
import uuid
from functools import partial
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.service import RPCError

from mailer.runtime.worker import ensure_schedules
from mailer.stack import seed_data
from tests.support.harness import Harness, finished, hours_excluding_now, wait_for
from workflows.campaign import CampaignWorkflow, workflow_id_for
from workflows.contracts import CampaignResult, Progress
from workflows.maintenance import (
    QUOTA_SYNC_SCHEDULE_ID,
    RECONCILE_SCHEDULE_ID,
    QuotaSyncWorkflow,
    ReconcileWorkflow,
)

OPEN = {"working_hours_start": 0, "working_hours_end": 24, "rate_per_hour": 100_000}


async def run_sync(harness: Harness):  # type: ignore[no-untyped-def]
    return await harness.client.execute_workflow(
        QuotaSyncWorkflow.run,
        id=f"quota-sync-{uuid.uuid4().hex[:8]}",
        task_queue=harness.task_queue,
    )


async def test_sync_wakes_campaigns_waiting_for_quota_and_the_schedule_exists_once(
    dev: Harness,
) -> None:
    url = dev.database_url
    user = seed_data.add_user(url)
    seed_data.set_account(url, smtp_port=dev.sink.port)
    seed_data.set_quota(url, 0)
    dev.stub.account.quota = 0
    campaign = seed_data.add_campaign(url, user, 20)
    async with dev.worker(**OPEN):
        await dev.start(campaign)
        await wait_for(
            lambda: dev.queue_row(campaign).get("defer_reason") == "quota_exhausted",
            what="the quota deferral",
        )
        # Worker processes of other tests on this shared dev server may have made them.
        for schedule_id in (QUOTA_SYNC_SCHEDULE_ID, RECONCILE_SCHEDULE_ID):
            with contextlib.suppress(RPCError):
                await dev.client.get_schedule_handle(schedule_id).delete()
        created = await ensure_schedules(dev.client, dev.task_queue)
        try:
            assert created == [QUOTA_SYNC_SCHEDULE_ID, RECONCILE_SCHEDULE_ID]
            assert await ensure_schedules(dev.client, dev.task_queue) == []
            quota = await dev.client.get_schedule_handle(QUOTA_SYNC_SCHEDULE_ID).describe()
            assert quota.schedule.spec.intervals[0].every.total_seconds() == 3600
            reconcile = await dev.client.get_schedule_handle(RECONCILE_SCHEDULE_ID).describe()
            assert reconcile.schedule.spec.intervals[0].every.total_seconds() == 300
        finally:
            for schedule_id in created:
                await dev.client.get_schedule_handle(schedule_id).delete()

        dev.stub.account.quota = 1000
        result = await run_sync(dev)
        assert (result.emails_available, result.error, result.woken) == (1000, "", 1)
        outcome = await finished(
            dev.client.get_workflow_handle(workflow_id_for(campaign), result_type=CampaignResult)
        )
    assert outcome.sent == 20
    synced = dev.sql(
        "SELECT emails_available, sync_error, last_synced_at IS NOT NULL FROM mailer_smtpbzquota"
    )
    assert synced == [(980, "", True)]


async def test_a_failed_sync_keeps_the_numbers_and_says_why(dev: Harness) -> None:
    seed_data.set_account(dev.database_url, smtp_port=dev.sink.port)
    seed_data.set_quota(dev.database_url, 77)
    dev.stub.account.fail_status = 503
    async with dev.worker():
        result = await run_sync(dev)
    assert result.emails_available == 77 and result.woken == 0
    assert "HTTP 503" in result.error
    row = dev.sql("SELECT emails_available, sync_error FROM mailer_smtpbzquota")[0]
    assert row[0] == 77 and "HTTP 503" in str(row[1])


async def test_reconcile_restarts_campaigns_whose_workflow_is_gone(dev: Harness) -> None:
    url = dev.database_url
    user = seed_data.add_user(url)
    seed_data.set_account(url, smtp_port=dev.sink.port)
    seed_data.set_quota(url, 1_000_000)
    sending = seed_data.add_campaign(url, user, 30)
    paused = seed_data.add_campaign(url, user, 10)
    start, end = hours_excluding_now()
    async with dev.worker(working_hours_start=start, working_hours_end=end):
        # Both start deferred (outside the one-hour window), then lose their workflows.
        for campaign in (sending, paused):
            await dev.start(campaign)
            await wait_for(partial(_deferred_outside_hours, dev, campaign), what="deferral")
        await dev.client.get_workflow_handle(workflow_id_for(paused)).signal("pause")
        await wait_for(
            lambda: dev.queue_row(paused).get("campaign_status") == "paused", what="pause"
        )
        for campaign in (sending, paused):
            await dev.client.get_workflow_handle(workflow_id_for(campaign)).terminate("lost")
        dev.sql_exec(
            "UPDATE mailer_campaignqueue SET status = 'processing' WHERE campaign_id = :c",
            c=sending,
        )

        result = await dev.client.execute_workflow(
            ReconcileWorkflow.run, id=f"reconcile-{uuid.uuid4().hex[:8]}", task_queue=dev.task_queue
        )
        assert sorted(result.restarted) == sorted([sending, paused])
        assert result.unstuck == [sending]
        assert dev.queue_row(sending)["status"] == "pending"
        restored = dev.client.get_workflow_handle(workflow_id_for(paused))
        await wait_for(
            lambda: _state(restored, "paused"), what="the paused campaign to stay paused"
        )
        # Restored with its pause reason, not a generic one.
        assert (await restored.query(CampaignWorkflow.progress)).pause_reason == (
            "paused by an operator"
        )
        again = await dev.client.execute_workflow(
            ReconcileWorkflow.run, id=f"reconcile-{uuid.uuid4().hex[:8]}", task_queue=dev.task_queue
        )
        assert (again.restarted, again.unstuck) == ([], [])
        for campaign in (sending, paused):
            await dev.client.get_workflow_handle(workflow_id_for(campaign)).signal("cancel")


async def _state(handle: WorkflowHandle[Any, Any], state: str) -> bool:
    progress: Progress = await handle.query(CampaignWorkflow.progress)
    return progress.state == state


def _deferred_outside_hours(harness: Harness, campaign: str) -> bool:
    return harness.queue_row(campaign).get("defer_reason") == "outside_hours"

"""The scheduled quota sync (dev server: the time-skipping server has no schedules)."""

from __future__ import annotations

import uuid

from tests import factories
from tests.harness import Harness, wait_for
from worker import ensure_schedules
from workflows.campaign import CampaignWorkflow, workflow_id_for
from workflows.maintenance import QUOTA_SYNC_SCHEDULE_ID, QuotaSyncWorkflow

OPEN = {"working_hours_start": 0, "working_hours_end": 24, "rate_per_hour": 100_000}


async def run_sync(harness: Harness):  # type: ignore[no-untyped-def]
    return await harness.client.execute_workflow(
        QuotaSyncWorkflow.run, id=f"quota-sync-{uuid.uuid4().hex[:8]}", task_queue=harness.task_queue
    )


async def test_sync_wakes_campaigns_waiting_for_quota_and_the_schedule_exists_once(
    dev: Harness,
) -> None:
    url = dev.database_url
    user = factories.add_user(url)
    factories.set_account(url, smtp_port=dev.sink.port)
    factories.set_quota(url, 0)
    dev.stub.account.quota = 0
    campaign = factories.add_campaign(url, user, 20)
    async with dev.worker(**OPEN):
        await dev.start(campaign)
        await wait_for(
            lambda: dev.queue_row(campaign).get("defer_reason") == "quota_exhausted",
            what="the quota deferral",
        )
        created = await ensure_schedules(dev.client, dev.task_queue)
        try:
            assert created == [QUOTA_SYNC_SCHEDULE_ID]
            assert await ensure_schedules(dev.client, dev.task_queue) == []
            description = await dev.client.get_schedule_handle(QUOTA_SYNC_SCHEDULE_ID).describe()
            assert description.schedule.spec.intervals[0].every.total_seconds() == 3600
        finally:
            await dev.client.get_schedule_handle(QUOTA_SYNC_SCHEDULE_ID).delete()

        dev.stub.account.quota = 1000
        result = await run_sync(dev)
        assert (result.emails_available, result.error, result.woken) == (1000, "", 1)
        outcome = await dev.client.get_workflow_handle_for(
            CampaignWorkflow.run, workflow_id_for(campaign)
        ).result()
    assert outcome.sent == 20
    synced = dev.sql("SELECT emails_available, sync_error, last_synced_at IS NOT NULL FROM mailer_smtpbzquota")
    assert synced == [(980, "", True)]


async def test_a_failed_sync_keeps_the_numbers_and_says_why(dev: Harness) -> None:
    factories.set_account(dev.database_url, smtp_port=dev.sink.port)
    factories.set_quota(dev.database_url, 77)
    dev.stub.account.fail_status = 503
    async with dev.worker():
        result = await run_sync(dev)
    assert result.emails_available == 77 and result.woken == 0
    assert "HTTP 503" in result.error
    row = dev.sql("SELECT emails_available, sync_error FROM mailer_smtpbzquota")[0]
    assert row[0] == 77 and "HTTP 503" in str(row[1])

"""Scheduled starts through simulated hours (time-skipping server): a campaign scheduled with
``start_at`` fires at its minute, waits unstarted meanwhile (``ready`` in the tables, the time
in ``deferred_until``), can be paused, cancelled and moved before it fires, and counts against
its creator's starts when it is scheduled."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from mailer.stack import seed_data
from tests.support.harness import (
    Harness,
    finished,
    progress,
    progress_past,
    skip_to,
    skip_to_monday_9,
    zone,
)
from workflows.campaign import CampaignWorkflow, workflow_id_for
from workflows.contracts import CampaignInput, CampaignResult, Progress, RescheduleInput
from workflows.search_attributes import MAILER_DEFERRED_UNTIL, MAILER_STATUS


async def schedule(
    harness: Harness, campaign: str, start_at: datetime
) -> WorkflowHandle[CampaignWorkflow, CampaignResult]:
    """Start the campaign's workflow as ``mailer start --at`` does."""
    return await harness.client.start_workflow(
        CampaignWorkflow.run,
        CampaignInput(campaign, start_at=start_at),
        id=workflow_id_for(campaign),
        task_queue=harness.task_queue,
    )


async def update(
    handle: WorkflowHandle[CampaignWorkflow, CampaignResult], method: object, *args: object
) -> Progress:
    """An acknowledged operation's answer (the SDK types a described update as returning
    its coroutine)."""
    answer: Progress = await handle.execute_update(cast(Any, method), *args)
    return answer


async def monday(env: WorkflowEnvironment, hour: int, minute: int = 0) -> datetime:
    """Next Monday at ``hour:minute`` (harness zone), the clock moved to its 09:00."""
    await skip_to_monday_9(env)
    day = (await env.get_current_time()).astimezone(zone()).date()
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone())


async def test_a_scheduled_start_fires_at_its_minute_and_waits_unstarted_until_then(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    campaign = harness.ready_campaign(30)
    start_at = await monday(time_env, 14, 37)
    async with harness.worker():
        handle = await schedule(harness, campaign, start_at)
        state = await progress_past(handle, "starting")
        assert (state.state, state.scheduled_for) == ("scheduled", start_at)
        row = harness.queue_row(campaign)
        assert (row["campaign_status"], row["status"], row["defer_reason"]) == (
            "ready",
            "pending",
            "",
        )
        assert row["deferred_until"] == start_at
        attributes = (await handle.describe()).typed_search_attributes
        assert attributes.get(MAILER_STATUS) == "scheduled"
        assert attributes.get(MAILER_DEFERRED_UNTIL) == start_at
        assert harness.sent_times(campaign) == []

        result = await finished(handle)
    assert result.sent == 30
    first = min(harness.sent_times(campaign))
    assert first >= start_at and first - start_at < timedelta(minutes=1)
    started_at = harness.sql("SELECT started_at FROM mailer_campaign WHERE id = :c", c=campaign)
    assert started_at[0][0] >= start_at  # type: ignore[operator]


async def test_paused_before_it_fires_nothing_is_sent_until_resumed(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    campaign = harness.ready_campaign(20)
    start_at = await monday(time_env, 11)
    async with harness.worker():
        handle = await schedule(harness, campaign, start_at)
        paused = await update(handle, CampaignWorkflow.pause_campaign)
        assert (paused.state, paused.scheduled_for) == ("paused", start_at)
        assert harness.queue_row(campaign)["campaign_status"] == "paused"

        await skip_to(time_env, start_at + timedelta(hours=2))
        assert (await progress(handle)).state == "paused"
        assert harness.sent_times(campaign) == []

        resumed_at = (await time_env.get_current_time()).astimezone(zone())
        await update(handle, CampaignWorkflow.resume_campaign)
        result = await finished(handle)
    assert result.sent == 20
    assert min(harness.sent_times(campaign)) >= resumed_at


async def test_resumed_before_its_time_it_waits_for_the_time(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    campaign = harness.ready_campaign(5)
    start_at = await monday(time_env, 15)
    async with harness.worker():
        handle = await schedule(harness, campaign, start_at)
        await update(handle, CampaignWorkflow.pause_campaign)
        resumed = await update(handle, CampaignWorkflow.resume_campaign)
        assert (resumed.state, resumed.scheduled_for) == ("scheduled", start_at)
        assert harness.queue_row(campaign)["campaign_status"] == "ready"
        await finished(handle)
    assert min(harness.sent_times(campaign)) >= start_at


async def test_a_reschedule_moves_the_start_and_a_past_time_is_refused(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    campaign = harness.ready_campaign(10)
    start_at = await monday(time_env, 12)
    later = start_at + timedelta(hours=3, minutes=15)
    async with harness.worker():
        handle = await schedule(harness, campaign, start_at)
        moved = await update(handle, CampaignWorkflow.reschedule, RescheduleInput(later))
        assert (moved.state, moved.scheduled_for) == ("scheduled", later)
        assert harness.queue_row(campaign)["deferred_until"] == later

        now = await time_env.get_current_time()
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await update(
                handle, CampaignWorkflow.reschedule, RescheduleInput(now - timedelta(hours=1))
            )
        assert "is in the past" in str(refused.value.cause)
        with pytest.raises(WorkflowUpdateFailedError) as too_far:
            await update(
                handle, CampaignWorkflow.reschedule, RescheduleInput(now + timedelta(days=400))
            )
        assert "more than a year ahead" in str(too_far.value.cause)
        assert (await progress(handle)).scheduled_for == later

        await finished(handle)
    first = min(harness.sent_times(campaign))
    assert later <= first < later + timedelta(minutes=1)


async def test_cancelled_before_it_fires_it_sends_nothing(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    campaign = harness.ready_campaign(5)
    start_at = await monday(time_env, 16)
    async with harness.worker():
        handle = await schedule(harness, campaign, start_at)
        cancelled = await update(handle, CampaignWorkflow.cancel_campaign)
        result = await finished(handle)
    assert cancelled.state == result.status == "cancelled"
    assert harness.queue_row(campaign)["campaign_status"] == "cancelled"
    assert harness.sent_times(campaign) == []


async def test_the_start_counts_against_the_creators_starts_when_scheduled(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    """With one start an hour, a campaign scheduled for tomorrow uses this hour's start: a
    second campaign started now by the same user is refused."""
    user = harness.add_sender()
    tomorrow_campaign = seed_data.add_campaign(harness.database_url, user, 3)
    now_campaign = seed_data.add_campaign(harness.database_url, user, 3)
    start_at = (await monday(time_env, 10)) + timedelta(days=1)
    async with harness.worker(throttle_campaign_start_per_hour=1):
        handle = await schedule(harness, tomorrow_campaign, start_at)
        state = await progress_past(handle, "starting")
        assert state.state == "scheduled"
        refused = await harness.start(now_campaign)
        with pytest.raises(WorkflowFailureError) as failure:
            await finished(refused)
        assert "already started 1 campaigns this hour" in str(failure.value.cause)
        result = await finished(handle)
    assert result.sent == 3

"""The ledger's short activities run as local activities (workflows.campaign's
LOCAL_LEDGER_PATCH): fewer history events and no task-queue round trip per start and
deferral; ``send_batch`` stays an activity (time-skipping server, real PostgreSQL, Redis
and SMTP)."""

from __future__ import annotations

from collections import Counter

from temporalio.testing import WorkflowEnvironment

from mailer.stack import seed_data
from tests.support.harness import Harness, finished, skip_to_monday_9
from workflows.campaign import LOCAL_LEDGER_PATCH


async def test_a_campaign_records_its_ledger_work_as_markers_and_sends_through_activities(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender()
    campaign = seed_data.add_campaign(harness.database_url, user, 30)
    await skip_to_monday_9(time_env)
    async with harness.worker(send_batch_size=10, rate_per_hour=10):  # two hourly deferrals
        handle = await harness.start(campaign)
        result = await finished(handle)
    assert (result.status, result.sent) == ("sent", 30)
    history = await handle.fetch_history()
    activities = Counter(
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    )
    markers = Counter(
        event.marker_recorded_event_attributes.marker_name
        for event in history.events
        if event.HasField("marker_recorded_event_attributes")
    )
    assert set(activities) == {"send_batch"} and activities["send_batch"] >= 3
    # The start, every deferral's record and the read after each sleep, and the finish.
    assert markers["core_local_activity"] >= 1 + 2 * 2 + 1, markers
    assert markers["core_patch"] == 1
    patch = next(
        event.marker_recorded_event_attributes
        for event in history.events
        if event.HasField("marker_recorded_event_attributes")
        and event.marker_recorded_event_attributes.marker_name == "core_patch"
    )
    assert LOCAL_LEDGER_PATCH.encode() in patch.details["patch-data"].payloads[0].data
    # The campaign's own rows were written all the same.
    assert harness.queue_row(campaign)["status"] == "completed"

"""Operators' actions from Temporal, the playbook's SQL and signals always win
(dev server: cancellation, search attributes and the reconcile need a full server)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.mailer_activities import MailerActivities
from db.engine import get_engine
from mailer.core.settings import Settings
from mailer.runtime.worker import build_worker
from mailer.stack import seed_data
from mailer.stack.smtp_sink import FailureRule
from tests.support.harness import (
    Harness,
    finished,
    hours_excluding_now,
    listed_as,
    progress,
    skip_to_monday_9,
    state_is,
    wait_for,
)
from tests.support.interceptors import QueriesSeen
from tests.support.playbook import runbook_sql
from workflows.campaign import CampaignWorkflow, Waiting, signal_acts
from workflows.contracts import ReconcileResult, SendBatchInput, SendBatchResult
from workflows.maintenance import ReconcileWorkflow
from workflows.search_attributes import MAILER_STATUS
from workflows.states import Signal
from workflows.transitions import PAUSED_IN_DATABASE

OPEN = {"working_hours_start": 0, "working_hours_end": 24, "rate_per_hour": 100_000}


async def reconcile(harness: Harness) -> ReconcileResult:
    return await harness.client.execute_workflow(
        ReconcileWorkflow.run, id=f"reconcile-{uuid.uuid4().hex[:8]}", task_queue=harness.task_queue
    )


def run_sql(harness: Harness, sql: str) -> None:
    """The playbook's SQL exactly as written (it may hold several statements)."""
    with get_engine(harness.database_url).begin() as conn:
        conn.exec_driver_sql(sql)


async def test_a_cancel_from_temporal_is_recorded_and_never_undone(dev: Harness) -> None:
    campaign = dev.ready_campaign(5)
    start, end = hours_excluding_now()
    async with dev.worker(working_hours_start=start, working_hours_end=end):
        handle = await dev.start(campaign)
        await wait_for(lambda: state_is(handle, "deferred"), what="the deferral")
        await handle.cancel()  # what the Web UI's "Request Cancellation" does
        with pytest.raises(WorkflowFailureError):
            await finished(handle)
        description = await handle.describe()
        assert description.status == WorkflowExecutionStatus.CANCELED
        assert description.typed_search_attributes.get(MAILER_STATUS) == "cancelled"
        row = dev.queue_row(campaign)
        assert (row["campaign_status"], row["status"]) == ("cancelled", "cancelled")
        result = await reconcile(dev)
        assert campaign not in result.restarted
    assert dev.queue_row(campaign)["campaign_status"] == "cancelled"


async def test_reconcile_leaves_a_deferred_campaigns_workflow_unqueried(dev: Harness) -> None:
    """A query is a task on a worker (and a replay when the workflow is not cached): at
    10,000 deferred campaigns, reconcile must not ask every one each 5 minutes."""
    campaign = dev.ready_campaign(5)
    start, end = hours_excluding_now()
    queries = QueriesSeen()
    settings = dev.settings.model_copy(
        update={"working_hours_start": start, "working_hours_end": end}
    )
    async with build_worker(
        dev.client, settings, task_queue=dev.task_queue, interceptors=[queries]
    ):
        handle = await dev.start(campaign)
        await wait_for(lambda: state_is(handle, "deferred"), what="the deferral")
        assert dev.queue_row(campaign)["defer_reason"] == "outside_hours"
        queries.names.clear()
        result = await reconcile(dev)
        assert (result.restarted, result.unstuck, result.resumed) == ([], [], [])
        assert "progress" not in queries.names
        await progress(handle)  # what it would have cost: one query on this worker
        assert queries.names.count("progress") == 1
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await finished(handle)


async def test_the_playbooks_pause_sql_is_honoured_between_messages(dev: Harness) -> None:
    campaign = dev.ready_campaign(300)
    dev.sink.handler.delay_seconds = 0.02
    async with dev.worker(**OPEN):
        handle = await dev.start(campaign)
        await wait_for(lambda: len(dev.sent_times(campaign)) >= 20, what="the first sends")
        run_sql(dev, runbook_sql("SET status = 'paused'", campaign))
        await wait_for(lambda: state_is(handle, "paused"), what="the pause", timeout=15)
        state = await progress(handle)
        assert state.pause_reason == PAUSED_IN_DATABASE and state.pending > 0
        # Stopped between messages: everything the server got is recorded, nothing more.
        assert len(dev.sink.handler.recipients()) == len(dev.sent_times(campaign)) < 300
        # The workflow's mirrors never wrote "sending" back over the operator's pause.
        row = dev.queue_row(campaign)
        assert (row["campaign_status"], row["status"]) == ("paused", "pending")
        description = await handle.describe()
        assert description.typed_search_attributes.get(MAILER_STATUS) == "paused"
        await handle.signal(CampaignWorkflow.resume)
        result = await finished(handle)
    assert (result.status, result.sent) == ("sent", 300)


async def test_the_playbooks_resume_sql_wakes_a_breaker_paused_campaign(
    dev: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    campaign = dev.ready_campaign(10)
    dev.sink.handler.rules = [FailureRule("all", 421)]
    async with dev.worker(circuit_breaker_threshold=1, **OPEN):
        handle = await dev.start(campaign)
        await wait_for(lambda: state_is(handle, "paused"), what="the breaker")
        # A campaign that pauses itself says so at WARNING, with the reason.
        warnings = [r for r in caplog.records if r.levelname == "WARNING"]
        assert any("paused (circuit breaker: 1 consecutive" in r.getMessage() for r in warnings)
        row = dev.queue_row(campaign)
        assert (row["defer_reason"], row["consecutive_transient_errors"]) == ("transient_error", 1)
        dev.sink.handler.rules = []  # the cause is fixed
        run_sql(dev, runbook_sql("SET deferred_until = NULL", campaign))
        # Reconcile asks only a workflow its listing shows waiting (the next turn asks one
        # the listing had not caught up with).
        await wait_for(
            lambda: listed_as(dev.client, campaign, "paused"), what="the listing to show the pause"
        )
        result = await reconcile(dev)
        assert result.resumed == [campaign]
        final = await finished(handle)
    assert (final.status, final.sent) == ("sent", 10)


@pytest.mark.parametrize(
    ("waiting", "resume", "wake"),
    [(Waiting.NOTHING, False, False), (Waiting.SLEEP, True, True), (Waiting.PAUSED, True, False)],
)
def test_signals_act_only_where_the_campaign_waits(
    waiting: Waiting, resume: bool, wake: bool
) -> None:
    """A resume (or wake) that arrives while an activity runs is not kept: it would undo
    the next breaker or 535 pause, or skip the next sleep."""
    assert signal_acts(Signal.RESUME, waiting) is resume
    assert signal_acts(Signal.WAKE, waiting) is wake


class ResumeDuringTheRetry(MailerActivities):
    """The second ``send_batch`` (the retry after the deferral's sleep) waits until the test
    has sent a signal: a deterministic await point to signal at."""

    def __init__(self, settings: Settings, client: Client) -> None:
        super().__init__(settings, client)
        self.batches = 0
        self.entered = asyncio.Event()
        self.go_on = asyncio.Event()

    @activity.defn
    async def send_batch(self, request: SendBatchInput) -> SendBatchResult:
        self.batches += 1
        if self.batches == 2:
            self.entered.set()
            await self.go_on.wait()
        return await super().send_batch(request)


async def test_a_resume_during_an_activity_does_not_undo_the_next_breaker_pause(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    campaign = seed_data.add_campaign(harness.database_url, harness.add_sender(), 10)
    harness.sink.handler.rules = [FailureRule("all", 421)]
    settings = harness.settings.model_copy(update={"circuit_breaker_threshold": 2})
    activities = ResumeDuringTheRetry(settings, time_env.client)
    worker = Worker(
        time_env.client,
        task_queue=harness.task_queue,
        workflows=[CampaignWorkflow],
        activities=activities.all,
        activity_executor=concurrent.futures.ThreadPoolExecutor(max_workers=4),
    )
    await skip_to_monday_9(time_env)
    async with worker:
        handle = await harness.start(campaign)
        # Skip the first transient error's delay (in the background: time stands still
        # while the gated activity runs).
        skipping = asyncio.create_task(time_env.sleep(timedelta(minutes=6)))
        await asyncio.wait_for(activities.entered.wait(), timeout=30)
        await handle.signal(CampaignWorkflow.resume)  # while the deferral's state is shown
        activities.go_on.set()
        await skipping
        await wait_for(lambda: state_is(handle, "paused"), what="the breaker")
        await time_env.sleep(timedelta(minutes=30))
        assert await state_is(handle, "paused")  # not resumed by the stale signal
        history = await handle.fetch_history()
        batches = [
            e
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
            and e.activity_task_scheduled_event_attributes.activity_type.name == "send_batch"
        ]
        assert len(batches) == 2
        await handle.signal(CampaignWorkflow.cancel)
        await finished(handle)

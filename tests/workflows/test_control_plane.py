"""Operators' actions from Temporal, the playbook's SQL and signals always win
(dev server: cancellation, search attributes and the reconcile need a full server)."""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

from db.engine import get_engine
from mailer.stack.smtp_sink import FailureRule
from tests.harness import Harness, hours_excluding_now, progress, state_is, wait_for
from tests.playbook import runbook_sql
from workflows.campaign import PAUSED_IN_DATABASE, CampaignWorkflow, Waiting, signal_acts
from workflows.contracts import ReconcileResult
from workflows.maintenance import ReconcileWorkflow
from workflows.search_attributes import MAILER_STATUS
from workflows.states import Signal

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
            await handle.result()
        description = await handle.describe()
        assert description.status == WorkflowExecutionStatus.CANCELED
        assert description.typed_search_attributes.get(MAILER_STATUS) == "cancelled"
        row = dev.queue_row(campaign)
        assert (row["campaign_status"], row["status"]) == ("cancelled", "cancelled")
        result = await reconcile(dev)
        assert campaign not in result.restarted
    assert dev.queue_row(campaign)["campaign_status"] == "cancelled"


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
        result = await handle.result()
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
        result = await reconcile(dev)
        assert result.resumed == [campaign]
        final = await handle.result()
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

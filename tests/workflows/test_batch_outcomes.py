"""Each batch outcome through the real CampaignWorkflow with stubbed activities (the
samples-python way: ``@activity.defn(name=…)`` stand-ins on the time-skipping server), so the
workflow's reaction to every outcome is checked in milliseconds. The real activities against
real servers are tested beside these (test_send_path.py, test_campaign_limits.py)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.support.harness import finished, new_task_queue, wait_for, zone_name
from workflows.campaign import CampaignWorkflow, workflow_id_for
from workflows.contracts import (
    CampaignInput,
    CampaignResult,
    Limits,
    RecordStateInput,
    RecordStateResult,
    SendBatchInput,
    SendBatchResult,
    Snapshot,
    SnapshotInput,
    SnapshotResult,
    StartCampaignInput,
    StartCampaignResult,
)
from workflows.states import CampaignStatus, SendOutcome
from workflows.working_hours import next_clock_hour

# Round the clock: what is tested is the outcome, not the hour the suite runs at.
LIMITS = Limits(
    timezone=zone_name(),
    working_hours_start=0,
    working_hours_end=24,
    rate_per_hour=1_000_000,
    circuit_breaker_threshold=3,
    transient_retry_delay_minutes=5,
    send_batch_size=10,
)


@dataclass
class Step:
    """What one send_batch call answers: ``outcome`` (sending ``sent`` of the batch)."""

    outcome: SendOutcome
    sent: int = 0
    error: str = ""
    retry_in: timedelta | None = None


@dataclass
class FakeCampaign:
    """The ledger as the workflow sees it, and the send path's answers, scripted."""

    pending: int
    script: list[Step]
    sent: int = 0
    status: str = CampaignStatus.READY
    records: list[RecordStateInput] = field(default_factory=list)
    batches: list[SendBatchInput] = field(default_factory=list)

    def snapshot(self) -> Snapshot:
        return Snapshot(
            limits=LIMITS,
            quota_available=1_000_000,
            sent_today_by_creator=0,
            active_campaigns=1,
            pending=self.pending,
            sent=self.sent,
            failed=0,
            campaign_status=self.status,
        )

    @activity.defn(name="start_campaign")
    async def start_campaign(self, request: StartCampaignInput) -> StartCampaignResult:
        self.status = CampaignStatus.SENDING
        return StartCampaignResult(self.snapshot())

    @activity.defn(name="load_snapshot")
    async def load_snapshot(self, request: SnapshotInput) -> SnapshotResult:
        return SnapshotResult(self.snapshot())

    @activity.defn(name="record_state")
    async def record_state(self, request: RecordStateInput) -> RecordStateResult:
        self.records.append(request)
        self.status = request.campaign_status
        return RecordStateResult(self.snapshot())

    @activity.defn(name="send_batch")
    async def send_batch(self, request: SendBatchInput) -> SendBatchResult:
        self.batches.append(request)
        step = self.script.pop(0) if self.script else Step(SendOutcome.COMPLETED, sent=10**9)
        sent = min(step.sent, request.max_messages, self.pending)
        self.pending -= sent
        self.sent += sent
        retry_at = request.now + step.retry_in if step.retry_in else None
        return SendBatchResult(
            step.outcome, sent, 0, self.snapshot(), error=step.error, retry_at=retry_at
        )

    def deferrals(self) -> list[tuple[str, datetime | None]]:
        return [(r.defer_reason, r.deferred_until) for r in self.records if r.defer_reason]


@asynccontextmanager
async def running(
    env: WorkflowEnvironment, fake: FakeCampaign
) -> AsyncIterator[WorkflowHandle[CampaignWorkflow, CampaignResult]]:
    """The campaign's workflow started, with a worker of the stand-ins running."""
    queue = new_task_queue()
    worker = Worker(
        env.client,
        task_queue=queue,
        workflows=[CampaignWorkflow],
        activities=[fake.start_campaign, fake.load_snapshot, fake.record_state, fake.send_batch],
    )
    campaign = str(uuid.uuid4())
    async with worker:
        handle = await env.client.start_workflow(
            CampaignWorkflow.run,
            CampaignInput(campaign),
            id=workflow_id_for(campaign),
            task_queue=queue,
        )
        try:
            yield handle
        finally:
            # A run left waiting would hold the time-skipping server's clock for later tests.
            with contextlib.suppress(RPCError):
                await handle.terminate("test over")


async def test_a_full_window_defers_to_the_next_clock_hour(time_env: WorkflowEnvironment) -> None:
    fake = FakeCampaign(pending=25, script=[Step(SendOutcome.RATE_LIMITED, sent=5)])
    async with running(time_env, fake) as handle:
        result = await finished(handle)
    assert (result.status, result.sent) == ("sent", 25)
    [(reason, until)] = fake.deferrals()
    first = fake.batches[0].now
    assert (reason, until) == ("rate_per_hour", next_clock_hour(first, LIMITS.timezone))
    assert fake.batches[1].now >= next_clock_hour(first, LIMITS.timezone)


async def test_transient_errors_retry_after_the_delay_then_trip_the_breaker(
    time_env: WorkflowEnvironment,
) -> None:
    fake = FakeCampaign(pending=20, script=[Step(SendOutcome.TRANSIENT, error="421 busy")] * 3)
    async with running(time_env, fake) as handle:
        # Polling does not move the time-skipping clock: skip past three retry delays.
        await time_env.sleep(timedelta(minutes=16))
        state = await handle.query(CampaignWorkflow.progress)
        assert state.state == "paused"
        assert state.pause_reason == (
            "circuit breaker: 3 consecutive transient errors (last: 421 busy)"
        )
        assert [reason for reason, _ in fake.deferrals()] == ["transient_error"] * 3
        gaps = [b.now - a.now for a, b in zip(fake.batches, fake.batches[1:], strict=False)]
        assert all(gap >= timedelta(minutes=5) for gap in gaps), gaps
        await handle.signal(CampaignWorkflow.resume)
        result = await finished(handle)
    assert (result.status, result.sent) == ("sent", 20)


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        (SendOutcome.CONFIGURATION, "configuration error: 535 5.7.8 bad credentials"),
        (SendOutcome.SERVER_REFUSED, "refused by the server: 535 5.7.8 bad credentials"),
    ],
)
async def test_a_refusal_of_the_campaign_pauses_until_resumed(
    time_env: WorkflowEnvironment, outcome: SendOutcome, reason: str
) -> None:
    fake = FakeCampaign(pending=5, script=[Step(outcome, error="535 5.7.8 bad credentials")])
    async with running(time_env, fake) as handle:
        await wait_for(lambda: _state(handle, "paused"), what="the pause")
        assert (await handle.query(CampaignWorkflow.progress)).pause_reason == reason
        assert len(fake.batches) == 1
        await handle.signal(CampaignWorkflow.resume)
        result = await finished(handle)
    assert (result.status, result.sent, len(fake.batches)) == ("sent", 5, 2)


async def test_recipients_waiting_for_a_retry_sleep_until_the_first(
    time_env: WorkflowEnvironment,
) -> None:
    wait = timedelta(minutes=15)
    fake = FakeCampaign(pending=3, script=[Step(SendOutcome.RECIPIENTS_WAITING, retry_in=wait)])
    async with running(time_env, fake) as handle:
        result = await finished(handle)
    assert result.sent == 3
    [(reason, until)] = fake.deferrals()
    assert (reason, until) == ("transient_error", fake.batches[0].now + wait)
    assert fake.batches[1].now >= fake.batches[0].now + wait


async def test_domain_pacing_sleeps_to_the_minute_the_batch_names(
    time_env: WorkflowEnvironment,
) -> None:
    pace = timedelta(seconds=40)
    fake = FakeCampaign(pending=4, script=[Step(SendOutcome.DOMAIN_PACED, retry_in=pace)])
    async with running(time_env, fake) as handle:
        result = await finished(handle)
    assert result.sent == 4
    assert fake.deferrals() == [("rate_per_hour", fake.batches[0].now + pace)]


async def test_blocked_with_no_gate_to_say_why_looks_again_shortly(
    time_env: WorkflowEnvironment,
) -> None:
    fake = FakeCampaign(pending=4, script=[Step(SendOutcome.BLOCKED)])
    async with running(time_env, fake) as handle:
        result = await finished(handle)
    assert result.sent == 4
    [(reason, until)] = fake.deferrals()
    assert reason == "quota_exhausted" and until is not None
    # One minute after the batch came back (the workflow's clock then).
    assert timedelta(minutes=1) <= until - fake.batches[0].now < timedelta(minutes=1, seconds=5)


async def test_stale_and_completed_batches_go_straight_on(time_env: WorkflowEnvironment) -> None:
    steps = [Step(SendOutcome.STALE), Step(SendOutcome.COMPLETED, sent=10)]
    fake = FakeCampaign(pending=15, script=steps)
    async with running(time_env, fake) as handle:
        result = await finished(handle)
    assert (result.sent, len(fake.batches), fake.deferrals()) == (15, 3, [])


async def _state(handle: WorkflowHandle[CampaignWorkflow, CampaignResult], state: str) -> bool:
    return (await handle.query(CampaignWorkflow.progress)).state == state

"""The CRM drives campaigns through the seed's tables, as it drove the Celery engine: its
writes (on its own connections, not mailer's) are requests a real worker process carries out
within the old beat's 30 s — start, pause, resume, cancel — and a campaign taken over in
flight keeps its deferral and breaker count. Nothing is sent while the old engine's lock is
held."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis as redis_lib

from bench.faults.rig import WorkerProcess
from mailer.stack import seed_data
from tests.support.crm import crm_queue, crm_sql, crm_transaction, dispatcher_wakes
from tests.support.harness import Harness, process_env, progress, wait_for
from workflows.campaign import CampaignWorkflow, workflow_id_for
from workflows.contracts import CampaignResult

# The old beat ran every 30 s: a request is carried out within that.
WITHIN = 30.0


@pytest.fixture
async def worker(dev: Harness, tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    """A real worker process (it runs the dispatcher) on this test's servers."""
    process = WorkerProcess(
        process_env(dev, MAILER_RATE_PER_HOUR="1000000"), tmp_path / "worker.log"
    )
    try:
        await wait_for(process.polling, timeout=60, what="the worker to poll")
        yield process
    finally:
        process.stop()


def sent(harness: Harness, campaign: str) -> int:
    return len(harness.sent_times(campaign))


async def test_a_campaign_queued_in_the_tables_starts_and_sends(
    dev: Harness, worker: WorkerProcess
) -> None:
    campaign = dev.ready_campaign(20)
    crm_queue(dev, campaign)
    await wait_for(lambda: sent(dev, campaign) == 20, timeout=WITHIN, what="all 20 sent")
    assert f"campaign {campaign}: started (ready in the tables)" in worker.log.read_text()
    # The worker heard the trigger's NOTIFY and woke the dispatcher: no wait for its turn.
    assert await dispatcher_wakes(dev) >= 1
    await wait_for(
        lambda: dev.queue_row(campaign)["campaign_status"] == "sent", what="the campaign sent"
    )


async def test_pause_resume_and_cancel_a_deferred_campaign_through_the_tables(
    dev: Harness, tmp_path: Path
) -> None:
    # Five an hour: the campaign sends five and sleeps until the next clock hour, where
    # only a request can reach it.
    process = WorkerProcess(process_env(dev, MAILER_RATE_PER_HOUR="5"), tmp_path / "w.log")
    try:
        await wait_for(process.polling, timeout=60, what="the worker to poll")
        campaign = dev.ready_campaign(20)
        crm_queue(dev, campaign)
        handle = dev.client.get_workflow_handle(
            workflow_id_for(campaign), result_type=CampaignResult
        )
        await wait_for(lambda: _state_is(handle, "deferred"), timeout=WITHIN, what="deferral")
        assert sent(dev, campaign) == 5

        crm_sql(dev, "UPDATE mailer_campaign SET status = 'paused' WHERE id = %(c)s", c=campaign)
        await wait_for(lambda: _state_is(handle, "paused"), timeout=WITHIN, what="the pause")

        crm_sql(dev, "UPDATE mailer_campaign SET status = 'sending' WHERE id = %(c)s", c=campaign)
        await wait_for(
            lambda: _state_is(handle, "deferred", "sending"), timeout=WITHIN, what="the resume"
        )

        crm_sql(dev, "UPDATE mailer_campaign SET status = 'cancelled' WHERE id = %(c)s", c=campaign)
        result = await asyncio.wait_for(handle.result(), WITHIN)
        assert result.status == "cancelled"
        assert sent(dev, campaign) == 5 and len(dev.sink.handler.recipients()) == 5
        log = process.log.read_text()
        assert f"campaign {campaign}: pause (requested in the tables)" in log
        assert f"campaign {campaign}: resume (requested in the tables)" in log
    finally:
        process.stop()


async def test_a_campaign_taken_over_in_flight_keeps_its_deferral_and_breaker_count(
    dev: Harness, worker: WorkerProcess
) -> None:
    user = dev.add_sender()
    deferred = seed_data.add_campaign(dev.database_url, user, 6)
    stuck = seed_data.add_campaign(dev.database_url, user, 4)
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=15)
    # As the Celery engine left them, in one commit (the worker acts on a half-written
    # state within a second): sending, two recipients already sent, a deferral with seven
    # transient errors, and a row left 'processing' twenty minutes ago.
    with crm_transaction(dev) as conn:
        for campaign in (deferred, stuck):
            conn.execute(
                "UPDATE mailer_campaignrecipient SET status = 'sent' WHERE id IN (SELECT id "
                "FROM mailer_campaignrecipient WHERE campaign_id = %s ORDER BY id LIMIT 2)",
                (campaign,),
            )
            conn.execute("UPDATE mailer_campaign SET status = 'sending' WHERE id = %s", (campaign,))
        crm_queue(
            dev,
            deferred,
            connection=conn,
            defer_reason="rate_per_hour",
            deferred_until=until,
            consecutive_transient_errors=7,
            last_error="451 4.7.1 try later",
        )
        twenty_minutes_ago = datetime.now(UTC) - timedelta(minutes=20)
        crm_queue(dev, stuck, connection=conn, status="processing", started_at=twenty_minutes_ago)

    handle = dev.client.get_workflow_handle(workflow_id_for(deferred))
    await wait_for(lambda: _state_is(handle, "deferred"), timeout=WITHIN, what="the takeover")
    state = await progress(handle)
    assert (state.defer_reason, state.deferred_until) == ("rate_per_hour", until)
    assert (state.consecutive_transient_errors, state.last_error) == (7, "451 4.7.1 try later")
    await wait_for(lambda: sent(dev, stuck) == 2, timeout=WITHIN, what="the stuck row's rest")
    await wait_for(lambda: sent(dev, deferred) == 4, timeout=WITHIN + 20, what="after the deferral")
    assert min(dev.sent_times(deferred)) >= until, "sent before the deferral ended"
    assert len(dev.sink.handler.recipients()) == 6, "an already-sent recipient was sent again"


async def test_nothing_is_sent_while_the_old_engines_lock_is_held(
    dev: Harness, worker: WorkerProcess
) -> None:
    lock = redis_lib.Redis.from_url(dev.settings.redis_connection_url)
    lock.set("crm:mailer:send_pending_emails:lock", uuid.uuid4().hex, ex=600)
    try:
        campaign = dev.ready_campaign(10)
        crm_queue(dev, campaign)
        handle = dev.client.get_workflow_handle(workflow_id_for(campaign))

        async def waiting_for_the_old_engine() -> bool:
            if not await _state_is(handle, "deferred"):
                return False
            return "old engine" in (await progress(handle)).last_error

        await wait_for(waiting_for_the_old_engine, timeout=WITHIN, what="the wait")
        await wait_for(waiting_for_the_old_engine, timeout=WITHIN, what="a second look")
        assert dev.sink.handler.recipients() == []
        assert (await progress(handle)).consecutive_transient_errors == 0
    finally:
        lock.delete("crm:mailer:send_pending_emails:lock")
        lock.close()
    await wait_for(lambda: sent(dev, campaign) == 10, timeout=WITHIN, what="sending after it")
    warnings = [
        line for line in worker.log.read_text().splitlines() if "the old engine holds" in line
    ]
    assert len(warnings) == 1, warnings


async def test_a_start_the_crm_schedules_in_the_tables_waits_moves_and_starts(
    dev: Harness, worker: WorkerProcess
) -> None:
    """A ready campaign queued with a future ``deferred_until`` is a scheduled start; a new
    time in the row moves it; ``sending`` starts it now."""
    campaign = dev.ready_campaign(5)
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    crm_queue(dev, campaign, deferred_until=at)
    handle = dev.client.get_workflow_handle(workflow_id_for(campaign))
    await wait_for(lambda: _state_is(handle, "scheduled"), timeout=WITHIN, what="the schedule")
    assert (await progress(handle)).scheduled_for == at

    later = at + timedelta(hours=1)
    crm_sql(
        dev,
        "UPDATE mailer_campaignqueue SET deferred_until = %(t)s WHERE campaign_id = %(c)s",
        t=later,
        c=campaign,
    )

    async def moved() -> bool:
        return await _state_is(handle, "scheduled") and (
            (await progress(handle)).scheduled_for == later
        )

    await wait_for(moved, timeout=WITHIN, what="the start moved")
    assert sent(dev, campaign) == 0
    crm_sql(dev, "UPDATE mailer_campaign SET status = 'sending' WHERE id = %(c)s", c=campaign)
    await wait_for(lambda: sent(dev, campaign) == 5, timeout=WITHIN, what="sent once started")
    log = worker.log.read_text()
    assert f"campaign {campaign}: start moved to {later.isoformat()}" in log


async def _state_is(handle: object, *states: str) -> bool:
    try:
        state = await handle.query(CampaignWorkflow.progress)  # type: ignore[attr-defined]
    except Exception:  # not started yet
        return False
    return str(state.state) in states

"""Against the Temporal dev server (start_local): visibility, continue-as-new, worker crashes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailer.stack.binaries import temporal_binary
from tests.support.harness import (
    PROJECT_ROOT,
    Harness,
    address,
    finished,
    hours_excluding_now,
    process_env,
    progress,
    wait_for,
    zone,
)
from workflows.campaign import workflow_id_for
from workflows.search_attributes import ALL_KEYS


async def test_deferred_campaign_is_found_by_search_attribute(dev: Harness) -> None:
    campaign = dev.ready_campaign(3)
    start, end = hours_excluding_now()
    async with dev.worker(working_hours_start=start, working_hours_end=end):
        handle = await dev.start(campaign)
        await wait_for(lambda: _deferred(handle), what="the outside_hours deferral")

        def listed() -> bool:
            found = subprocess.run(
                [
                    temporal_binary(),
                    "workflow",
                    "list",
                    "--address",
                    address(dev.client),
                    "--query",
                    'MailerDeferReason="outside_hours"',
                    "-o",
                    "json",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            return workflow_id_for(campaign) in found

        await wait_for(listed, timeout=30, what="visibility to list the campaign")
        description = await handle.describe()
        attributes = description.typed_search_attributes
        assert attributes.get(ALL_KEYS[0]) == "deferred"
        assert attributes.get(ALL_KEYS[1]) == "outside_hours"
        until = attributes.get(ALL_KEYS[2])
        assert until is not None and until.astimezone(zone()).hour == start
        metadata = await handle.query("__temporal_workflow_metadata")
        details = (
            json.dumps(metadata, default=str)
            if not hasattr(metadata, "current_details")
            else metadata.current_details
        )
        assert "outside_hours" in str(details) and "3 pending" in str(details)
        row = dev.queue_row(campaign)
        assert (row["status"], row["defer_reason"]) == ("pending", "outside_hours")
        await handle.signal("cancel")
        assert (await finished(handle)).status == "cancelled"


async def _deferred(handle) -> bool:  # type: ignore[no-untyped-def]
    state = await progress(handle)
    return state.state == "deferred" and state.defer_reason == "outside_hours"


async def test_10000_recipients_continue_as_new_and_send_once(dev: Harness) -> None:
    campaign = dev.ready_campaign(10_000)
    async with dev.worker(
        rate_per_hour=1_000_000,
        working_hours_start=0,
        working_hours_end=24,
        send_batch_size=100,  # 100 batches: enough history to continue as new
        continue_as_new_events=300,
    ):
        handle = await dev.start(campaign)
        result = await finished(handle)
    assert (result.status, result.sent, result.pending) == ("sent", 10_000, 0)
    runs = [
        run async for run in dev.client.list_workflows(f'WorkflowId="{workflow_id_for(campaign)}"')
    ]
    assert len(runs) >= 2, "continue-as-new did not happen"
    for run in runs:
        history = await dev.client.get_workflow_handle(run.id, run_id=run.run_id).fetch_history()
        assert len(history.events) <= 10_240
    delivered = Counter(dev.sink.handler.recipients())
    assert len(delivered) == 10_000 and set(delivered.values()) == {1}


def _worker_process(harness: Harness, log: Path) -> subprocess.Popen[bytes]:
    env = process_env(
        harness, MAILER_RATE_PER_HOUR="1000000", MAILER_SEND_HEARTBEAT_TIMEOUT_SECONDS="3"
    )
    return subprocess.Popen(
        [sys.executable, "-m", "worker"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def worker_log(tmp_path: Path) -> Iterator[Path]:
    log = tmp_path / "worker.log"
    yield log
    if log.exists():
        sys.stdout.write(log.read_text()[-3000:])


async def test_worker_killed_mid_campaign_loses_nothing(dev: Harness, worker_log: Path) -> None:
    campaign = dev.ready_campaign(300)
    dev.sink.handler.delay_seconds = 0.01
    first = _worker_process(dev, worker_log)
    try:
        handle = await dev.start(campaign)
        await wait_for(lambda: len(dev.sent_times(campaign)) >= 50, timeout=60, what="first sends")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        at_kill = len(dev.sent_times(campaign))
        assert at_kill < 300
        second = _worker_process(dev, worker_log)
        try:
            result = await finished(handle)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(60) == 0
    finally:
        if first.poll() is None:
            first.kill()
    assert (result.status, result.sent) == ("sent", 300)
    delivered = Counter(dev.sink.handler.recipients())
    assert len(delivered) == 300, "a recipient was lost"
    assert sum(delivered.values()) - 300 <= 2, "more than the two messages in flight were repeated"


async def test_worker_stops_gracefully_on_sigterm(dev: Harness, worker_log: Path) -> None:
    campaign = dev.ready_campaign(200)
    dev.sink.handler.delay_seconds = 0.01
    first = _worker_process(dev, worker_log)
    handle = await dev.start(campaign)
    await wait_for(lambda: len(dev.sent_times(campaign)) >= 20, timeout=60, what="first sends")
    first.send_signal(signal.SIGTERM)
    assert first.wait(60) == 0
    second = _worker_process(dev, worker_log)
    try:
        result = await finished(handle)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)
    assert result.sent == 200
    delivered = Counter(dev.sink.handler.recipients())
    assert len(delivered) == 200 and set(delivered.values()) == {1}
    assert "shutting down" in worker_log.read_text()


async def test_a_slow_smtp_server_gets_each_recipient_exactly_once(dev: Harness) -> None:
    """Every SMTP step slower than half the heartbeat timeout: the batch heartbeats from a
    background task, so no retry runs beside it and nobody gets a message twice."""
    campaign = dev.ready_campaign(3)
    dev.sink.handler.step_delay_seconds = 1.6  # MAIL, RCPT, DATA: 4.8 s a message
    async with dev.worker(send_heartbeat_timeout_seconds=3):
        handle = await dev.start(campaign)
        result = await finished(handle)
    assert (result.status, result.sent) == ("sent", 3)
    delivered = Counter(dev.sink.handler.recipients())
    assert len(delivered) == 3 and set(delivered.values()) == {1}, delivered
    history = await handle.fetch_history()
    timeouts = [e for e in history.events if e.HasField("activity_task_timed_out_event_attributes")]
    assert timeouts == []

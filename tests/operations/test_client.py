"""mailer.client, as the CRM's code calls it: each operation answers once the workflow has
applied it (a Temporal Update), or raises NotApplied saying why not."""

from __future__ import annotations

import uuid

import pytest

from mailer.client import MailerClient, NotApplied
from mailer.operations import control
from tests.support.harness import Harness, address, finished, hours_excluding_now, wait_for


def client_of(harness: Harness) -> MailerClient:
    return MailerClient(
        harness.settings.model_copy(
            update={"temporal_address": address(harness.client), "task_queue": harness.task_queue}
        )
    )


async def test_start_pause_resume_cancel_are_acknowledged_or_refused_with_why(
    dev: Harness,
) -> None:
    campaign = dev.ready_campaign(5)
    mailer = client_of(dev)
    start, end = hours_excluding_now()
    async with dev.worker(working_hours_start=start, working_hours_end=end):
        started = await mailer.start(campaign)
        assert (started.status, started.state, started.defer_reason) == (
            "sending",
            "deferred",
            "outside_hours",
        )
        paused = await mailer.pause(campaign)
        assert (paused.status, paused.state) == ("paused", "paused")
        with pytest.raises(NotApplied, match=f"cannot pause campaign {campaign}: it is paused"):
            await mailer.pause(campaign)
        resumed = await mailer.resume(campaign)
        assert resumed.state != "paused" and resumed.status == "sending"
        cancelled = await mailer.cancel(campaign)
        assert (cancelled.status, cancelled.state, cancelled.pending) == ("cancelled", "", 5)
        with pytest.raises(NotApplied, match="is not running: it is cancelled"):
            await mailer.cancel(campaign)
    assert dev.sink.handler.recipients() == []


async def test_a_resume_while_a_batch_sends_is_refused_not_dropped(dev: Harness) -> None:
    campaign = dev.ready_campaign(10)  # one batch of 15 s: still sending when asked
    dev.sink.handler.step_delay_seconds = 0.5
    mailer = client_of(dev)
    async with dev.worker():
        started = await mailer.start(campaign)
        assert started.state == "sending"
        with pytest.raises(NotApplied, match="it is sending: neither paused nor deferred"):
            await mailer.resume(campaign)
        cancelled = await mailer.cancel(campaign)  # within one message
    assert cancelled.status == "cancelled" and cancelled.sent < 10


async def test_a_run_that_sent_everything_before_the_answer_is_a_success(dev: Harness) -> None:
    """The start looks at the run after starting it; a run that already closed having sent
    everything is reported as sent (it used to be "finished at once", exit 1)."""
    campaign = dev.ready_campaign(2)
    async with dev.worker():
        handle = await dev.start(campaign)
        await finished(handle)
        closed = await control.closed_at_once(handle, uuid.UUID(campaign))
    assert (closed.state, closed.sent, closed.pending) == ("sent", 2, 0)
    assert (await client_of(dev).status(campaign)).status == "sent"


async def test_create_from_the_crms_rows_checks_them_as_mailer_create_does(dev: Harness) -> None:
    creator = str(dev.add_sender())
    mailer = client_of(dev)
    rows = [
        {"email": "anna@example.com", "name": "Анна", "plan": "gold"},
        {"email": "not an address", "name": "X", "plan": "silver"},
    ]
    with pytest.raises(NotApplied, match=r"recipients\.csv:3: email: 'not an address' is not"):
        await mailer.create(
            name="Tariffs", subject="{{ name }}", recipients=rows, created_by=creator, text="x"
        )
    assert dev.sql("SELECT count(*) FROM mailer_campaign") == [(0,)]  # nothing written

    campaign = await mailer.create(
        name="Tariffs",
        subject="{{ name }}, your {{ plan }} plan",
        recipients=rows[:1],
        created_by=creator,
        text="Hi {{ name }}",
    )
    assert dev.sql(
        "SELECT status, total_recipients FROM mailer_campaign WHERE id = :c", c=campaign
    ) == [("ready", 1)]
    async with dev.worker():
        await mailer.start(campaign)
        await wait_for(lambda: dev.sink.handler.recipients() == ["anna@example.com"])

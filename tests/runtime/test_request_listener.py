"""The worker's LISTEN on the requests' NOTIFY, against real PostgreSQL and Temporal: a CRM
write wakes the task queue's dispatcher (a burst is one or two wakes, not one per write),
and a connection the database drops is one WARNING, a reconnect and an INFO, after which
writes wake it again; switched off, the dispatcher's own turn still carries writes out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.faults.rig import WorkerProcess
from mailer.doctor.probes import look_at_database
from mailer.runtime.request_listener import RequestListener
from mailer.runtime.worker import ensure_dispatcher
from mailer.stack import seed_data
from tests.support.crm import crm_queue, crm_sql, dispatcher_wakes
from tests.support.harness import Harness, process_env, wait_for


@pytest.fixture
async def listening(dev: Harness) -> AsyncIterator[RequestListener]:
    """A listener for this test's task queue, its dispatcher started (no worker polls, so
    the wakes stay in its history to be counted)."""
    await ensure_dispatcher(dev.client, dev.task_queue)
    listener = RequestListener(
        dev.client, dev.settings.model_copy(update={"task_queue": dev.task_queue})
    )
    task = asyncio.create_task(listener.run())
    # Listening: the first connection wakes the dispatcher once, for what came before.
    await wait_for(lambda: listener.wakes == 1, timeout=30, what="the listener to connect")
    yield listener
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def campaign_status_by(dev: Harness, application_name: str, *statuses: str, campaign: str) -> None:
    """Status changes on one connection, each its own transaction (its own NOTIFY)."""
    with seed_data.connection_as(dev.database_url, application_name) as conn:
        for status in statuses:
            conn.execute("UPDATE mailer_campaign SET status = %s WHERE id = %s", (status, campaign))


async def test_a_crm_write_wakes_the_dispatcher_and_a_burst_is_not_a_wake_each(
    dev: Harness, listening: RequestListener
) -> None:
    campaign = dev.ready_campaign(1)
    crm_sql(dev, "UPDATE mailer_campaign SET status = 'paused' WHERE id = %(c)s", c=campaign)
    await wait_for(lambda: listening.wakes == 2, timeout=30, what="the wake")
    assert listening.heard == 1 and await dispatcher_wakes(dev) == 2
    # `mailer doctor` counts the connection listening.
    facts = look_at_database(dev.settings, datetime.now(UTC))
    assert facts.crm_request_listeners == 1

    # Twenty writes, twenty notifications: one wake once they pause (two if the machine
    # stalls between two of them longer than the pause).
    campaign_status_by(dev, "crm", *(["sending", "paused"] * 10), campaign=campaign)
    await wait_for(
        lambda: listening.heard == 21 and listening.settled, timeout=30, what="the burst's wakes"
    )
    assert 3 <= listening.wakes <= 5  # 2 before; the burst: one or two (three if slow)
    assert await dispatcher_wakes(dev) == listening.wakes


async def test_two_commits_that_belong_together_are_one_wake_after_the_second(
    dev: Harness,
) -> None:
    """A CRM saving a campaign's status and then its queue row, each its own commit (Django
    outside ``transaction.atomic()``): the dispatcher is woken once, after the second — not
    between them, when the campaign would start without the row's deferral."""
    await ensure_dispatcher(dev.client, dev.task_queue)
    settings = dev.settings.model_copy(update={"task_queue": dev.task_queue})
    # A longer pause than the default, so a slow machine's gap between the two commits
    # stays inside it.
    listener = RequestListener(dev.client, settings, quiet_seconds=2.0)
    task = asyncio.create_task(listener.run())
    try:
        await wait_for(lambda: listener.wakes == 1, timeout=30, what="the listener to connect")
        campaign = dev.ready_campaign(1)
        crm_sql(dev, "UPDATE mailer_campaign SET status = 'sending' WHERE id = %(c)s", c=campaign)
        await wait_for(lambda: listener.heard == 1, timeout=30, what="the first commit heard")
        assert listener.wakes == 1 and not listener.settled  # held: more may belong to it
        crm_queue(dev, campaign, defer_reason="rate_per_hour")
        await wait_for(
            lambda: listener.heard == 2 and listener.settled, timeout=30, what="the one wake"
        )
        assert listener.wakes == 2
        assert await dispatcher_wakes(dev) == 2
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_dropped_connection_is_one_warning_then_listening_again(
    dev: Harness, listening: RequestListener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mailer.runtime.request_listener")
    crm_sql(
        dev,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'mailer-listener' AND datname = current_database()",
    )

    def said(text: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records if text in r.getMessage()]

    await wait_for(
        lambda: bool(said("listening for the CRM's requests at")), timeout=30, what="reconnect"
    )
    [warning] = said("not listening for the CRM's requests")
    assert warning.levelno == logging.WARNING
    assert "the dispatcher still looks every few seconds" in warning.getMessage()
    # Listening again: one wake for what may have been written meanwhile, then writes wake.
    await wait_for(lambda: listening.wakes == 2, timeout=30, what="the reconnect's wake")
    campaign = dev.ready_campaign(1)
    crm_sql(dev, "UPDATE mailer_campaign SET status = 'paused' WHERE id = %(c)s", c=campaign)
    await wait_for(lambda: listening.wakes == 3, timeout=30, what="a wake after reconnecting")


async def test_without_listening_the_dispatchers_own_turn_carries_requests_out(
    dev: Harness, tmp_path: Path
) -> None:
    """``MAILER_LISTEN_FOR_REQUESTS=false`` (behind PgBouncer): no LISTEN connection, no
    wake, and a campaign the CRM queues still starts, at the dispatcher's own turn."""
    worker = WorkerProcess(
        process_env(dev, MAILER_LISTEN_FOR_REQUESTS="false"), tmp_path / "worker.log"
    )
    try:
        await wait_for(worker.polling, timeout=60, what="the worker to poll")
        campaign = dev.ready_campaign(1)
        crm_queue(dev, campaign)
        await wait_for(
            lambda: len(dev.sent_times(campaign)) == 1, timeout=30, what="the campaign sent"
        )
        assert await dispatcher_wakes(dev) == 0
        assert look_at_database(dev.settings, datetime.now(UTC)).crm_request_listeners == 0
    finally:
        worker.stop()

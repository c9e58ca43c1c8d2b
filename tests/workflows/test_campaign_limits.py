"""Limits, errors and signals of the campaign workflow (time-skipping server)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from mailer.stack import seed_data
from mailer.stack.servers import free_port
from mailer.stack.smtp_sink import FailureRule, SmtpSink
from tests.support.harness import (
    Harness,
    finished,
    progress,
    skip_to_monday_9,
    state_is,
    wait_for,
)

LIFTED = {"rate_per_hour": 100_000}


def sent_count(harness: Harness, campaign: str | None = None) -> int:
    return len(harness.sent_times(campaign))


async def test_daily_limit_counts_all_campaigns_of_the_creator(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender(daily_limit=250)
    first = seed_data.add_campaign(harness.database_url, user, 300)
    second = seed_data.add_campaign(harness.database_url, user, 300)
    await skip_to_monday_9(time_env)
    async with harness.worker():
        handles = [await harness.start(first), await harness.start(second)]
        results = [await finished(handle) for handle in handles]
    assert [r.sent for r in results] == [300, 300]
    per_day = Counter(t.date() for t in harness.sent_times())
    assert sorted(per_day.values()) == [100, 250, 250]
    days = sorted(per_day)
    first_of_day_two = min(t for t in harness.sent_times() if t.date() == days[1])
    assert (first_of_day_two.hour, first_of_day_two.minute) == (9, 0)


async def test_quota_stops_sending_and_refill_with_wake_resumes(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender(quota=150)
    harness.stub.account.quota = 0  # the provider agrees: nothing left
    campaign = seed_data.add_campaign(harness.database_url, user, 300)
    await skip_to_monday_9(time_env)
    async with harness.worker(**LIFTED):
        handle = await harness.start(campaign)
        await wait_for(
            lambda: harness.queue_row(campaign).get("defer_reason") == "quota_exhausted",
            what="quota_exhausted",
        )
        await wait_for(
            lambda: state_is(handle, "deferred"), what="the query to report the deferral"
        )
        assert sent_count(harness, campaign) == 150
        state = await progress(handle)
        assert (state.state, state.defer_reason, state.sent) == ("deferred", "quota_exhausted", 150)
        quota_row = harness.sql("SELECT emails_available, sync_error FROM mailer_smtpbzquota")[0]
        assert quota_row == (0, "")

        harness.stub.account.quota = 1000
        await handle.signal("wake")
        result = await finished(handle)
    assert (result.status, result.sent) == ("sent", 300)
    assert harness.sql("SELECT emails_available FROM mailer_smtpbzquota")[0] == (850,)


async def test_transient_errors_defer_then_trip_the_breaker(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender()
    harness.sink.handler.rules = [FailureRule("all", 451)]
    campaign = seed_data.add_campaign(harness.database_url, user, 20)
    await skip_to_monday_9(time_env)
    async with harness.worker():
        handle = await harness.start(campaign)
        # Skip an hour: ten tries five minutes apart fit in it. (Awaiting the result instead
        # would skip a paused run to its timeout.)
        await time_env.sleep(timedelta(hours=1))
        await wait_for(lambda: state_is(handle, "paused"), what="pause")
        row = harness.queue_row(campaign)
        assert row["defer_reason"] == "transient_error"
        assert row["consecutive_transient_errors"] == 10
        assert "451" in str(row["last_error"])
        state = await progress(handle)
        assert state.state == "paused" and state.pause_reason.startswith("circuit breaker: 10")
        history = await handle.fetch_history()
        timers = [
            e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
        ]
        # Each retry waits the delay from the failure (the timer starts a moment later).
        assert len(timers) == 9
        assert all(abs(t - timedelta(minutes=5)) < timedelta(seconds=2) for t in timers), timers
        assert sent_count(harness) == 0

        harness.sink.handler.rules = []
        await handle.signal("resume")
        result = await finished(handle)
    assert (result.status, result.sent) == ("sent", 20)
    assert harness.queue_row(campaign)["consecutive_transient_errors"] == 0


async def test_permanent_refusals_fail_those_recipients_only(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender()
    harness.sink.handler.rules = [FailureRule("bad*@example.com", 550)]
    emails = [f"ok{i}@example.com" for i in range(8)] + [f"bad{i}@example.com" for i in range(3)]
    campaign = seed_data.add_campaign(harness.database_url, user, emails)
    await skip_to_monday_9(time_env)
    async with harness.worker():
        result = await finished(await harness.start(campaign))
    assert (result.status, result.sent, result.failed) == ("sent", 8, 3)
    failed = harness.sql(
        "SELECT email, status FROM mailer_campaignrecipient WHERE status = 'failed' ORDER BY email"
    )
    assert [f[0] for f in failed] == ["bad0@example.com", "bad1@example.com", "bad2@example.com"]
    logs = harness.sql(
        "SELECT count(*), min(smtp_code) FROM mailer_sendlog WHERE status = 'failed'"
    )
    assert logs == [(3, 550)]  # one attempt each: never retried
    assert sorted(harness.sink.handler.recipients()) == sorted(emails[:8])


async def test_authentication_failure_pauses_at_once(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    with SmtpSink(credentials=("mailer", "right")) as secured:
        user = harness.add_sender(smtp_username="mailer", smtp_password="wrong")
        seed_data.set_account(
            harness.database_url,
            smtp_port=secured.port,
            smtp_username="mailer",
            smtp_password="wrong",
        )
        campaign = seed_data.add_campaign(harness.database_url, user, 5)
        await skip_to_monday_9(time_env)
        async with harness.worker():
            handle = await harness.start(campaign)
            await wait_for(lambda: state_is(handle, "paused"), what="pause")
            state = await progress(handle)
            assert "authentication" in state.pause_reason and "535" in state.pause_reason
            assert "authentication" in str(harness.queue_row(campaign)["last_error"])
            assert state.consecutive_transient_errors == 0
            await handle.signal("cancel")
            result = await finished(handle)
    assert (result.status, result.pending) == ("cancelled", 5)
    assert secured.handler.recipients() == []


async def test_pause_mid_batch_then_resume_and_cancel(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender()
    harness.sink.handler.delay_seconds = 0.02
    campaign = seed_data.add_campaign(harness.database_url, user, 100)
    other = seed_data.add_campaign(harness.database_url, user, 100)
    await skip_to_monday_9(time_env)
    async with harness.worker(**LIFTED):
        handle = await harness.start(campaign)
        await wait_for(lambda: sent_count(harness, campaign) >= 5, what="first sends")
        await handle.signal("pause")
        await wait_for(
            lambda: harness.queue_row(campaign).get("campaign_status") == "paused", what="pause"
        )
        await wait_for(lambda: state_is(handle, "paused"), what="the query to report the pause")
        at_pause = sent_count(harness, campaign)
        assert at_pause < 100, "the pause did not stop the batch"
        await asyncio.sleep(0.5)  # nothing may be sent while paused
        assert sent_count(harness, campaign) == at_pause
        assert (await progress(handle)).state == "paused"
        await handle.signal("pause")  # wrong state: ignored, the run goes on
        await handle.signal("resume")
        result = await finished(handle)
        assert (result.status, result.sent) == ("sent", 100)

        second = await harness.start(other)
        await wait_for(lambda: sent_count(harness, other) >= 5, what="first sends")
        await second.signal("cancel")
        cancelled = await finished(second)
    assert cancelled.status == "cancelled" and cancelled.pending > 0
    assert cancelled.sent + cancelled.pending == 100
    pending = harness.sql(
        "SELECT count(*) FROM mailer_campaignrecipient WHERE campaign_id = :c AND status = 'pending'",
        c=other,
    )
    assert pending == [(cancelled.pending,)]
    row = harness.queue_row(other)
    assert (row["status"], row["campaign_status"]) == ("cancelled", "cancelled")
    delivered = Counter(harness.sink.handler.recipients())
    assert set(delivered.values()) == {1}


async def test_redis_down_fails_open_and_logs(
    time_env: WorkflowEnvironment, harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    user = harness.add_sender()
    campaign = seed_data.add_campaign(harness.database_url, user, 30)
    await skip_to_monday_9(time_env)
    caplog.set_level(logging.ERROR, logger="mailer.ratelimit")
    async with harness.worker(redis_url=f"redis://127.0.0.1:{free_port()}/0"):
        result = await finished(await harness.start(campaign))
    assert (result.status, result.sent) == ("sent", 30)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("Error reserving rate limit token" in r.getMessage() for r in errors)


async def test_three_campaigns_share_the_hourly_window_fairly(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    users = [harness.add_sender() for _ in range(3)]
    campaigns = [seed_data.add_campaign(harness.database_url, u, 400) for u in users]
    await skip_to_monday_9(time_env)
    # All three started before a worker takes any: a campaign whose first batch was planned
    # before the others had started would take the whole first hour (the fair share counts
    # the campaigns sending), which a busy machine made happen now and then.
    handles = [await harness.start(c) for c in campaigns]
    async with harness.worker():
        results = [await finished(h) for h in handles]
    assert all(r.sent == 400 for r in results)
    first_day = min(harness.sent_times()).date()
    shares = [sum(1 for t in harness.sent_times(c) if t.date() == first_day) for c in campaigns]
    assert sum(shares) == 900
    assert all(abs(share - 300) <= 60 for share in shares), shares
    per_hour = Counter(t.replace(minute=0, second=0, microsecond=0) for t in harness.sent_times())
    assert max(per_hour.values()) <= 100


async def test_start_is_validated_inside_the_workflow(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender()
    url = harness.database_url
    await skip_to_monday_9(time_env)
    async with harness.worker(throttle_campaign_start_per_hour=2, max_campaign_recipients=50):
        big = seed_data.add_campaign(url, user, 51)
        with pytest.raises(WorkflowFailureError) as too_big:
            await finished(await harness.start(big))
        assert "more than MAILER_MAX_CAMPAIGN_RECIPIENTS=50" in str(too_big.value.cause)

        small = [seed_data.add_campaign(url, user, 1) for _ in range(3)]
        # Started together, within one clock hour of the workflow's time; which one the
        # throttle refuses depends on the order their first activities run.
        handles = [await harness.start(c) for c in small]
        outcomes: dict[str, str] = {}
        for campaign, handle in zip(small, handles, strict=True):
            try:
                outcomes[campaign] = (await finished(handle)).status
            except WorkflowFailureError as refused:
                outcomes[campaign] = str(refused.cause)
        assert list(outcomes.values()).count("sent") == 2, outcomes
        refused_id, message = next((c, m) for c, m in outcomes.items() if m != "sent")
        assert "MAILER_THROTTLE_CAMPAIGN_START_PER_HOUR=2" in message
        assert harness.sql("SELECT status FROM mailer_campaign WHERE id = :c", c=refused_id) == [
            ("ready",)
        ]

    async with harness.worker():
        done = seed_data.add_campaign(url, user, 1)
        harness.sql_exec("UPDATE mailer_campaign SET status = 'cancelled' WHERE id = :c", c=done)
        with pytest.raises(WorkflowFailureError) as refused_start:
            await finished(await harness.start(done))
        assert f"campaign {done} is cancelled, not ready to start" in str(refused_start.value.cause)

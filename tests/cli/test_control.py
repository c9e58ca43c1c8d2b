"""The operator CLI driving real campaign workflows (dev server, worker in this process)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import redis as redis_lib

from activities.ratelimit import domain_window_key
from mailer.mail.pacing import parse_domain_rates
from mailer.stack import seed_data
from mailer.stack.smtp_sink import SmtpSink
from tests.support.harness import (
    Harness,
    cli,
    hours_excluding_now,
    progress,
    wait_for,
)
from workflows.campaign import workflow_id_for


async def test_start_pause_resume_cancel_and_wrong_states(dev: Harness) -> None:
    campaign = dev.ready_campaign(5)
    start, end = hours_excluding_now()
    async with dev.worker(working_hours_start=start, working_hours_end=end):
        started = await cli(dev, "start", campaign)
        assert started.returncode == 0, started.stderr
        assert f"campaign {campaign} started: deferred (outside_hours until" in started.stdout

        again = await cli(dev, "start", campaign)
        assert again.returncode == 1
        assert again.stderr.strip() == f"error: campaign {campaign} is sending, not ready to start"

        status = json.loads((await cli(dev, "status", campaign, "--json")).stdout)
        assert (status["status"], status["defer_reason"]) == ("sending", "outside_hours")
        assert status["live"]["state"] == "deferred" and status["live"]["pending"] == 5

        listed = json.loads((await cli(dev, "list", "--reason", "outside_hours", "--json")).stdout)
        assert [row["campaign_id"] for row in listed] == [campaign]
        assert (
            json.loads((await cli(dev, "list", "--reason", "daily_limit", "--json")).stdout) == []
        )

        paused = await cli(dev, "pause", campaign)
        assert paused.returncode == 0 and paused.stdout.strip() == f"campaign {campaign}: paused"
        twice = await cli(dev, "pause", campaign)
        assert twice.returncode == 1
        assert twice.stderr.strip() == f"error: cannot pause campaign {campaign}: it is paused"

        resumed = await cli(dev, "resume", campaign)
        assert (
            resumed.returncode == 0 and resumed.stdout.strip() == f"campaign {campaign}: deferred"
        )

        cancelled = await cli(dev, "cancel", campaign)
        assert (
            cancelled.returncode == 0
            and cancelled.stdout.strip() == f"campaign {campaign}: cancelled"
        )
        after = await cli(dev, "cancel", campaign)
        assert after.returncode == 1
        assert after.stderr.strip() == f"error: campaign {campaign} is not running: it is cancelled"

    unknown = str(uuid.uuid4())
    missing = await cli(dev, "pause", unknown)
    assert missing.returncode == 1 and missing.stderr.strip() == f"error: no campaign {unknown}"
    never = dev.ready_campaign(1)
    not_started = await cli(dev, "resume", never)
    assert not_started.returncode == 1
    assert (
        not_started.stderr.strip()
        == f"error: campaign {never} is not running (it was never started)"
    )


async def test_watch_follows_a_campaign_to_the_end(dev: Harness) -> None:
    campaign = dev.ready_campaign(40)
    dev.sink.handler.delay_seconds = 0.01
    async with dev.worker(
        working_hours_start=0, working_hours_end=24, rate_per_hour=100_000, send_batch_size=10
    ):
        handle = await dev.client.start_workflow(
            "CampaignWorkflow",
            __import__("workflows.contracts", fromlist=["CampaignInput"]).CampaignInput(campaign),
            id=workflow_id_for(campaign),
            task_queue=dev.task_queue,
        )
        await wait_for(lambda: _started(handle), what="the campaign to start")
        watched = await cli(dev, "watch", campaign, "--interval", "0.2")
    assert watched.returncode == 0, watched.stderr
    assert watched.stdout.strip().endswith(
        f"campaign {campaign}: sent: 40 sent, 0 failed, 0 pending"
    )


async def _started(handle) -> bool:  # type: ignore[no-untyped-def]
    return (await progress(handle)).state != "starting"


async def test_start_refused_by_the_workflow_says_why(dev: Harness) -> None:
    campaign = dev.ready_campaign(3)
    async with dev.worker(max_campaign_recipients=2):
        refused = await cli(dev, "start", campaign)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"error: campaign not started: campaign {campaign} has 3 recipients, more than "
        "MAILER_MAX_CAMPAIGN_RECIPIENTS=2"
    )


async def test_start_reports_a_campaign_that_pauses_itself_at_once(dev: Harness) -> None:
    """A wrong password pauses the campaign a moment after it starts: `start` waits for
    the first batch and says so, instead of printing `sending`."""
    with SmtpSink(credentials=("mailer", "right")) as sink:
        dev.sink = sink
        user = dev.add_sender(smtp_username="mailer", smtp_password="wrong")
        campaign = seed_data.add_campaign(dev.database_url, user, 3)
        async with dev.worker(working_hours_start=0, working_hours_end=24):
            started = await cli(dev, "start", campaign)
            assert started.returncode == 0, started.stderr
            assert f"campaign {campaign} started: paused" in started.stdout
            assert "authentication failed" in started.stdout
            await cli(dev, "cancel", campaign)


async def test_status_shows_each_domain_groups_pending_and_this_minutes_use(dev: Harness) -> None:
    user = dev.add_sender()
    emails = ["a@mail.ru", "b@BK.ru", "c@mail.ru", "d@gmail.com"]
    campaign = seed_data.add_campaign(dev.database_url, user, emails)
    pacing = parse_domain_rates("mail.ru,bk.ru=20,gmail.com=60")
    client = redis_lib.Redis.from_url(dev.settings.redis_connection_url)
    now = datetime.now(UTC)
    for moment in (now, now + timedelta(minutes=1)):  # the CLI may read the next minute
        client.set(domain_window_key(pacing.groups[0], moment), 7)
    client.close()
    result = await cli(
        dev,
        "status",
        campaign,
        "--json",
        env_overrides={"MAILER_DOMAIN_RATE_PER_MINUTE": "mail.ru,bk.ru=20,gmail.com=60"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["pacing"] == {
        "mail.ru": "3 pending, 20/min (7 used this minute)",
        "gmail.com": "1 pending, 60/min (0 used this minute)",
    }


async def test_start_at_schedules_shows_moves_and_starts_now(dev: Harness) -> None:
    campaign = dev.ready_campaign(4)
    async with dev.worker():
        past = await cli(dev, "start", campaign, "--at", "2020-01-01T09:00")
        assert past.returncode == 1
        assert past.stderr.startswith(
            "error: --at: 2020-01-01T09:00"
        ) and past.stderr.strip().endswith("is in the past")
        garbage = await cli(dev, "start", campaign, "--at", "tomorrow")
        assert garbage.returncode == 2 and "'tomorrow' is not an ISO date" in garbage.stderr
        assert dev.queue_row(campaign) == {}  # nothing written

        at = (datetime.now(UTC) + timedelta(days=2)).replace(second=0, microsecond=0)
        scheduled = await cli(dev, "start", campaign, "--at", at.isoformat())
        assert scheduled.returncode == 0, scheduled.stderr
        local = at.astimezone(ZoneInfo(dev.settings.timezone)).isoformat()
        assert f"campaign {campaign} scheduled: starts at {local}" in scheduled.stdout

        listed = json.loads((await cli(dev, "list", "--json")).stdout)
        row = next(row for row in listed if row["campaign_id"] == campaign)
        assert (row["status"], row["scheduled_for"]) == ("ready", local)
        table = await cli(dev, "list", env_overrides={"COLUMNS": "250"})
        assert any(
            campaign in line and "scheduled" in line and local[:16] in line
            for line in table.stdout.splitlines()
        ), table.stdout
        status = json.loads((await cli(dev, "status", campaign, "--json")).stdout)
        assert (status["status"], status["live"]["state"]) == ("ready", "scheduled")
        assert status["scheduled_for"] == local

        later = at + timedelta(hours=5)
        moved = await cli(dev, "start", campaign, "--at", later.isoformat())
        assert moved.returncode == 0, moved.stderr
        assert dev.queue_row(campaign)["deferred_until"] == later

        now = await cli(dev, "start", campaign)
        assert now.returncode == 0, now.stderr
        assert f"campaign {campaign} started:" in now.stdout
        await wait_for(lambda: len(dev.sent_times(campaign)) == 4, what="all 4 sent")

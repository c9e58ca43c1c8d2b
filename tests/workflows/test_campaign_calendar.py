"""The campaign workflow through simulated days (time-skipping server, real everything else)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from temporalio.testing import WorkflowEnvironment

from mailer.stack import seed_data
from tests.support.harness import Harness, closed_at, finished, next_monday_9, skip_to


async def test_1000_recipients_at_seed_limits(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    url = harness.database_url
    user = seed_data.add_user(url)
    seed_data.set_account(url, smtp_port=harness.sink.port)
    seed_data.set_quota(url, 100_000)
    campaign = seed_data.add_campaign(url, user, 1000)
    monday = next_monday_9(await time_env.get_current_time())
    await skip_to(time_env, monday)

    async with harness.worker():
        handle = await harness.start(campaign)
        result = await finished(handle)
        closed = await closed_at(handle)

    assert (result.status, result.sent, result.pending) == ("sent", 1000, 0)
    times = harness.sent_times(campaign)
    assert len(times) == 1000
    assert all(9 <= t.hour < 18 for t in times), "a send outside working hours"
    per_hour = Counter(t.replace(minute=0, second=0, microsecond=0) for t in times)
    assert max(per_hour.values()) <= 100
    assert {t.date() for t in times} == {monday.date(), (monday + timedelta(days=1)).date()}
    assert sum(1 for t in times if t.date() == monday.date()) == 900
    # Every recipient got exactly one message at the sink.
    delivered = Counter(harness.sink.handler.recipients())
    assert len(delivered) == 1000 and set(delivered.values()) == {1}
    row = harness.queue_row(campaign)
    assert (row["status"], row["campaign_status"], row["defer_reason"]) == ("completed", "sent", "")
    assert closed.date() == (monday + timedelta(days=1)).date()

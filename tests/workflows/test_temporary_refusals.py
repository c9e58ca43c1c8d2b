"""One recipient's 4xx never holds back the rest: full mailboxes, greylisting domains, a
domain's route trouble, replies that say nothing, AUTH a server does not offer, and a
connection lost after the final dot (time-skipping server, real PostgreSQL, Redis and SMTP)."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from db.engine import session_scope
from db.queries import waiting_by_domain
from mailer.stack import seed_data
from mailer.stack.smtp_sink import FailureRule
from tests.support.harness import (
    Harness,
    finished,
    progress,
    recipient_rows,
    skip_to_monday_9,
    state_is,
    wait_for,
    zone,
)
from workflows.campaign import CampaignWorkflow
from workflows.contracts import CampaignResult

# The SDK core's marker for a local activity's result.
LOCAL_ACTIVITY_MARKER = "core_local_activity"
LIFTED = {"rate_per_hour": 100_000}


def sent_at(harness: Harness, campaign: str) -> dict[str, datetime]:
    rows = harness.sql(
        "SELECT email, sent_at FROM mailer_campaignrecipient WHERE campaign_id = :c "
        "AND status = 'sent'",
        c=campaign,
    )
    return {str(email): when for email, when in rows}  # type: ignore[misc]


def never_deferred_transient(harness: Harness, campaign: str) -> bool:
    """No batch of the campaign ended in a transient error (the breaker never counted)."""
    rows = harness.sql(
        "SELECT count(*) FROM mailer_campaignqueue WHERE campaign_id = :c "
        "AND (consecutive_transient_errors > 0 OR last_error <> '')",
        c=campaign,
    )
    return rows == [(0,)]


def activities_scheduled(events: Sequence[Any]) -> list[str]:
    """The activities a history ran, in order: scheduled ones, and local ones (a marker)."""
    names = []
    for event in events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            names.append(event.activity_task_scheduled_event_attributes.activity_type.name)
        elif event.HasField("marker_recorded_event_attributes"):
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == LOCAL_ACTIVITY_MARKER:
                data = json.loads(marker.details["data"].payloads[0].data)
                names.append(f"local {data['activity_type']}")
    return names


FULL = ["full0@example.com", "full1@example.com"]


def full_mailboxes_then_good_ones(harness: Harness, user: int, *, good: int = 1) -> str:
    """A campaign whose first two mailboxes are full once (452: they wait their retry) and
    whose ``good`` others (ok0@, ok1@, …) take their messages at once."""
    harness.sink.handler.rules = [
        FailureRule(address, 452, text="4.2.2 Mailbox full", times=1) for address in FULL
    ]
    emails = [*FULL, *(f"ok{i}@example.com" for i in range(good))]
    return seed_data.add_campaign(harness.database_url, user, emails)


async def test_full_mailboxes_at_the_head_of_a_list_do_not_hold_back_the_rest(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender()
    full = [f"full{i}@example.com" for i in range(5)]
    emails = full + [f"ok{i}@example.com" for i in range(55)]
    harness.sink.handler.rules = [
        FailureRule(address, 452, text="4.2.2 Mailbox full") for address in full
    ]
    campaign = seed_data.add_campaign(harness.database_url, user, emails)
    await skip_to_monday_9(time_env)
    async with harness.worker(recipient_max_attempts=3):
        handle = await harness.start(campaign)
        # The 55 good ones go in the first batch, at once, while the five wait alone.
        await wait_for(lambda: len(sent_at(harness, campaign)) == 55, what="the good ones")
        first = sent_at(harness, campaign)
        assert len(set(first.values())) == 1  # one batch, one moment
        waiting = recipient_rows(harness, campaign)
        assert {waiting[a][:2] for a in full} == {("pending", 1)}
        result = await finished(handle)
    assert (result.status, result.sent, result.failed) == ("sent", 55, 5)
    assert never_deferred_transient(harness, campaign)
    failed_at = harness.sql(
        "SELECT min(created_at), max(created_at) FROM mailer_sendlog WHERE status = 'failed'"
    )[0]
    start = next(iter(first.values()))
    # Tried at 0, +5 and +5+15 minutes (the schedule grows), then failed with the last reply.
    waited = failed_at[0] - start  # type: ignore[operator]
    assert timedelta(minutes=20) <= waited < timedelta(minutes=21)
    assert all(recipient_rows(harness, campaign)[a][1] == 3 for a in full)
    assert all("4.2.2 Mailbox full" in str(recipient_rows(harness, campaign)[a][2]) for a in full)


async def test_a_domain_greylisting_every_recipient_waits_while_other_domains_flow(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender()
    corp = [f"c{i}@corp.example" for i in range(20)]
    others = [f"o{i}@example.com" for i in range(20)]
    emails = corp + others  # the whole domain first: once, three in a row stopped the batch
    harness.sink.handler.rules = [
        FailureRule(
            "*@corp.example",
            450,
            text="4.7.1 <x@corp.example>: Recipient address rejected: Greylisted, please try "
            "again later",
            times=1,
        )
    ]
    campaign = seed_data.add_campaign(harness.database_url, user, emails)
    await skip_to_monday_9(time_env)
    async with harness.worker():
        result = await finished(await harness.start(campaign))
    assert (result.status, result.sent, result.failed) == ("sent", 40, 0)
    times = sent_at(harness, campaign)
    first_batch = min(times.values())
    assert {times[a] for a in others} == {first_batch}
    # Each corp recipient was tried once, waited its own 5 minutes, and went on the retry.
    assert all(timedelta(minutes=5) <= times[a] - first_batch < timedelta(minutes=6) for a in corp)
    assert Counter(harness.sink.handler.recipients()) == Counter(emails)
    assert never_deferred_transient(harness, campaign)


async def test_a_batch_leaving_only_waiting_recipients_says_so_and_no_batch_looks_again(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    """The first batch sends two and defers two full mailboxes; it reports that only they
    are left (with their retry time), so the campaign sleeps at once instead of running a
    batch that would find nobody ready: two batches in all, not three."""
    user = harness.add_sender()
    campaign = full_mailboxes_then_good_ones(harness, user, good=2)
    await skip_to_monday_9(time_env)
    async with harness.worker():
        handle = await harness.start(campaign)
        result = await finished(handle)
    assert (result.status, result.sent, result.failed) == ("sent", 4, 0)
    scheduled = activities_scheduled((await handle.fetch_history()).events)
    assert scheduled.count("send_batch") == 2
    times = sent_at(harness, campaign)
    assert all(timedelta(minutes=5) <= times[a] - times["ok0@example.com"] for a in FULL)
    assert never_deferred_transient(harness, campaign)


async def test_a_retry_wait_that_runs_out_goes_straight_to_the_batch(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    """The batch reads the campaign for itself, so the wake does not read it first: start,
    batch, deferral, batch, finish (five activities; six with a read on each wake)."""
    user = harness.add_sender()
    campaign = full_mailboxes_then_good_ones(harness, user)
    await skip_to_monday_9(time_env)
    async with harness.worker():
        handle = await harness.start(campaign)
        result = await finished(handle)
    assert (result.status, result.sent) == ("sent", 3)
    scheduled = activities_scheduled((await handle.fetch_history()).events)
    assert scheduled == [
        "start_campaign",
        "send_batch",
        "local record_state",  # deferred: transient_error until the mailboxes' retry
        "send_batch",
        "local record_state",  # sent
    ]


async def test_a_pause_in_the_table_during_a_retry_wait_holds_when_the_wait_runs_out(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    """The playbook's SQL pause is honoured though the wake does not read the campaign:
    the batch finds the row paused, sends nothing, and the campaign pauses."""
    user = harness.add_sender()
    campaign = full_mailboxes_then_good_ones(harness, user)
    await skip_to_monday_9(time_env)
    async with harness.worker():
        handle = await harness.start(campaign)
        await wait_for(lambda: state_is(handle, "deferred"), what="the retry wait")
        harness.sql_exec(
            "UPDATE mailer_campaign SET status = 'paused' WHERE id = :c", c=uuid.UUID(campaign)
        )
        await time_env.sleep(timedelta(minutes=6))  # past the mailboxes' first retry
        await wait_for(lambda: state_is(handle, "paused"), what="the pause in the table")
        assert Counter(harness.sink.handler.recipients()) == Counter({"ok0@example.com": 1})
        assert {recipient_rows(harness, campaign)[a][0] for a in FULL} == {"pending"}
        await handle.signal(CampaignWorkflow.resume)
        result = await finished(handle)
    assert (result.status, result.sent) == ("sent", 3)


async def test_a_wake_without_a_read_never_sends_past_a_daily_limit_used_up_meanwhile(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    """While the first campaign waits on two full mailboxes, a second campaign of the same
    creator uses up the day. The first wakes on a snapshot that still shows room; its batch
    claims under the limit in SQL, sends nothing, and the campaign defers to tomorrow."""
    user = harness.add_sender(daily_limit=4)
    first = full_mailboxes_then_good_ones(harness, user)
    second = seed_data.add_campaign(harness.database_url, user, 3)
    await skip_to_monday_9(time_env)
    async with harness.worker(**LIFTED):
        waiting = await harness.start(first)
        await wait_for(lambda: state_is(waiting, "deferred"), what="the retry wait")
        assert (await finished(await harness.start(second))).sent == 3
        result = await finished(waiting)
    assert (result.status, result.sent) == ("sent", 3)
    per_day = Counter(t.date() for t in harness.sent_times())
    assert sorted(per_day.items()) == [(min(per_day), 4), (max(per_day), 2)]
    late = {a: when.astimezone(zone()) for a, when in sent_at(harness, first).items()}
    assert {(late[a].date(), late[a].hour) for a in FULL} == {(max(per_day), 9)}


async def _pending_is(handle: WorkflowHandle[CampaignWorkflow, CampaignResult], n: int) -> bool:
    return (await progress(handle)).pending == n


async def test_a_domain_whose_route_fails_backs_off_without_spending_its_recipients_tries(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender()
    down = [f"d{i}@down.example" for i in range(6)]
    others = [f"o{i}@example.com" for i in range(10)]
    harness.sink.handler.rules = [
        FailureRule("*@down.example", 451, text="4.4.0 DNS temporary failure")
    ]
    campaign = seed_data.add_campaign(harness.database_url, user, down + others)
    await skip_to_monday_9(time_env)
    async with harness.worker():
        handle = await harness.start(campaign)
        await wait_for(lambda: len(sent_at(harness, campaign)) == 10, what="the other domain")
        # The first down.example refusal held back the other five: only one was tried.
        assert [a for a, _ in harness.sink.handler.refused] == [down[0]]
        rows = recipient_rows(harness, campaign)
        assert [rows[a][:2] for a in down] == [("pending", 1)] + [("pending", 0)] * 5
        # The workflow's own count follows once it has the batch's result.
        await wait_for(lambda: _pending_is(handle, 6), what="the workflow counting six pending")
        # What `mailer status` shows under "waiting": the domain, its six, their next try.
        with session_scope(harness.database_url) as session:
            waiting = waiting_by_domain(session, uuid.UUID(campaign), datetime.now(UTC))
        assert [(w.domain, w.waiting, w.most_attempts) for w in waiting] == [("down.example", 6, 1)]
        harness.sink.handler.rules = []  # the domain's DNS is back
        result = await finished(handle)
    assert (result.status, result.sent, result.failed) == ("sent", 16, 0)
    assert never_deferred_transient(harness, campaign)


async def test_an_unclear_run_on_one_domain_is_probed_on_another_and_backs_off_that_domain(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender()
    slow = [f"s{i}@slow.example" for i in range(6)]
    others = [f"o{i}@example.com" for i in range(10)]
    harness.sink.handler.rules = [FailureRule("*@slow.example", 451, text="Try again later")]
    campaign = seed_data.add_campaign(harness.database_url, user, slow + others)
    await skip_to_monday_9(time_env)
    async with harness.worker(recipient_max_attempts=2):
        handle = await harness.start(campaign)
        await wait_for(lambda: len(sent_at(harness, campaign)) == 10, what="the other domain")
        # Three unclear refusals, then a probe of example.com was taken: not a throttle; the
        # run was slow.example's, whose other three wait without being tried.
        assert [a for a, _ in harness.sink.handler.refused] == slow[:3]
        rows = recipient_rows(harness, campaign)
        assert [rows[a][:2] for a in slow] == [("pending", 1)] * 3 + [("pending", 0)] * 3
        assert never_deferred_transient(harness, campaign)
        harness.sink.handler.rules = []
        result = await finished(handle)
    assert (result.status, result.sent, result.failed) == ("sent", 16, 0)


async def test_auth_configured_but_not_offered_pauses_as_configuration(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    # The sink offers no AUTH (no authenticator): retrying every 5 minutes would never help.
    user = harness.add_sender(smtp_username="news@example.com", smtp_password="secret")
    campaign = seed_data.add_campaign(harness.database_url, user, 3)
    await skip_to_monday_9(time_env)
    async with harness.worker():
        handle = await harness.start(campaign)
        await wait_for(lambda: state_is(handle, "paused"), what="the configuration pause")
        reason = (await progress(handle)).pause_reason
    assert "does not offer AUTH" in reason and "starttls" in reason
    assert harness.queue_row(campaign)["consecutive_transient_errors"] == 0
    assert harness.sink.handler.messages == []


def message_ids_to(harness: Harness, address: str) -> list[str]:
    return [
        str(message_from_bytes(m.data, policy=policy.default)["Message-ID"])
        for m in harness.sink.handler.messages
        if address in m.recipients
    ]


async def test_a_connection_lost_after_the_final_dot_is_unknown_and_retried_once_with_its_id(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender()
    emails = [f"r{i}@example.com" for i in range(6)]
    harness.sink.handler.rules = [FailureRule("r2@example.com", 0, stage="drop", times=1)]
    campaign = seed_data.add_campaign(harness.database_url, user, emails)
    await skip_to_monday_9(time_env)
    async with harness.worker():
        handle = await harness.start(campaign)
        await wait_for(
            lambda: str(recipient_rows(harness, campaign)["r2@example.com"][2]).startswith(
                "unknown: no reply after the final dot"
            ),
            what="the unknown outcome",
        )
        assert recipient_rows(harness, campaign)["r2@example.com"][0] == "pending"
        result = await finished(handle)
    assert (result.status, result.sent, result.failed) == ("sent", 6, 0)
    ids = message_ids_to(harness, "r2@example.com")
    assert len(ids) == 2 and ids[0] == ids[1]  # the server had it; the retry is the same one
    times = sent_at(harness, campaign)
    first = min(times.values())
    # The retry waited the longest step (60 minutes), not the 5-minute transient delay.
    assert times["r2@example.com"] - first >= timedelta(minutes=60)
    assert Counter(harness.sink.handler.recipients())["r3@example.com"] == 1


async def test_an_outcome_unknown_twice_is_never_sent_a_third_time(
    time_env: WorkflowEnvironment, harness: Harness
) -> None:
    user = harness.add_sender()
    emails = [f"r{i}@example.com" for i in range(3)]
    harness.sink.handler.rules = [FailureRule("r0@example.com", 0, stage="drop")]
    campaign = seed_data.add_campaign(harness.database_url, user, emails)
    await skip_to_monday_9(time_env)
    async with harness.worker():
        result = await finished(await harness.start(campaign))
    assert (result.status, result.sent, result.failed) == ("sent", 2, 1)
    status, _, error = recipient_rows(harness, campaign)["r0@example.com"]
    assert status == "failed" and str(error).startswith("unknown:")
    assert len(message_ids_to(harness, "r0@example.com")) == 2

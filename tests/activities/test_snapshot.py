"""The snapshot the gates decide on, read in one statement, and a batch's allowance (real
PostgreSQL, no Temporal): each count means what the seed's own SQL means."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from activities.claims import Claim, plan_batch
from activities.ledger import (
    CampaignRefused,
    record_sent,
    sends_this_hour,
    sent_today,
    take_snapshot,
)
from db.engine import get_engine, session_scope
from db.models import Campaign
from mailer.core.settings import Settings, load_settings
from mailer.stack import seed_data
from workflows.gates import fair_share
from workflows.states import BatchLimit

NOW = datetime(2026, 12, 7, 10, tzinfo=UTC)  # Monday, 13:00 in Moscow
YESTERDAY = NOW - timedelta(days=1)


def settings(url: str) -> Settings:
    return load_settings(database_url=url, rate_per_hour=100)


def recipients(url: str, campaign: str) -> list[int]:
    rows = seed_data.sql_rows(
        url,
        "SELECT id FROM mailer_campaignrecipient WHERE campaign_id = :c ORDER BY id",
        c=campaign,
    )
    return [int(str(row[0])) for row in rows]


def send(url: str, recipient_ids: list[int], at: datetime) -> None:
    with get_engine(url).connect() as conn:
        for recipient_id in recipient_ids:
            record_sent(conn, recipient_id, f"<{recipient_id}@test>", at)


def start(url: str, campaign: str, defer_reason: str = "") -> None:
    seed_data.sql_execute(
        url, "UPDATE mailer_campaign SET status = 'sending' WHERE id = :c", c=campaign
    )
    seed_data.sql_execute(
        url,
        "INSERT INTO mailer_campaignqueue (campaign_id, status, queued_at, defer_reason, "
        "consecutive_transient_errors, last_error) VALUES (:c, 'pending', :t, :r, 0, '')",
        c=campaign,
        t=NOW,
        r=defer_reason,
    )


@pytest.fixture
def world(database_url: str) -> dict[str, str]:
    """Two creators and a campaign without one (its creator was deleted), with sends today
    and yesterday, a failed recipient and a test email."""
    seed_data.set_account(database_url, smtp_port=25, daily_limit=50)
    seed_data.set_quota(database_url, 777)
    alice, bob = seed_data.add_user(database_url), seed_data.add_user(database_url)
    campaigns = {
        "alice-1": seed_data.add_campaign(database_url, alice, 6),
        "alice-2": seed_data.add_campaign(database_url, alice, 3),
        "bob": seed_data.add_campaign(database_url, bob, 3),
        "orphan": seed_data.add_campaign(database_url, bob, 4),
    }
    seed_data.sql_execute(
        database_url,
        "UPDATE mailer_campaign SET created_by_id = NULL WHERE id = :c",
        c=campaigns["orphan"],
    )
    start(database_url, campaigns["alice-1"])
    start(database_url, campaigns["alice-2"])
    start(database_url, campaigns["bob"], defer_reason="daily_limit")  # holds itself back
    start(database_url, campaigns["orphan"])
    first = recipients(database_url, campaigns["alice-1"])
    send(database_url, first[:2], NOW)
    send(database_url, first[2:3], YESTERDAY)
    seed_data.sql_execute(
        database_url,
        "UPDATE mailer_campaignrecipient SET status = 'failed' WHERE id = :r",
        r=first[3],
    )
    send(database_url, recipients(database_url, campaigns["alice-2"])[:1], NOW)
    send(database_url, recipients(database_url, campaigns["bob"])[:2], NOW)
    send(database_url, recipients(database_url, campaigns["orphan"])[:1], NOW)
    # A test email is in the send log too, under its own provider: never counted.
    seed_data.sql_execute(
        database_url,
        "INSERT INTO mailer_sendlog (campaign_id, recipient_id, email, provider, status, "
        "message_id, smtp_code, error, created_at) VALUES (:c, NULL, 't@example.com', "
        "'smtp_test', 'sent', '<t@test>', 250, '', :t)",
        c=campaigns["alice-1"],
        t=NOW,
    )
    return campaigns


def snapshot(url: str, campaign: str):  # type: ignore[no-untyped-def]
    with session_scope(url) as session:
        return take_snapshot(session, uuid.UUID(campaign), NOW, settings(url))


def test_the_snapshot_counts_as_the_seed_does(database_url: str, world: dict[str, str]) -> None:
    first = snapshot(database_url, world["alice-1"])
    assert (first.pending, first.sent, first.failed) == (2, 3, 1)
    # Today's sends by the creator, all of her campaigns: not yesterday's, not Bob's, not
    # the test email.
    assert first.sent_today_by_creator == 3
    assert first.quota_available == 777
    assert first.limits.per_user_daily_limit == 50
    # Sending and not holding themselves back: Alice's two and the orphan (Bob's waits for
    # tomorrow on his daily limit).
    assert first.active_campaigns == 3
    assert first.campaign_status == "sending"
    assert snapshot(database_url, world["bob"]).sent_today_by_creator == 2


def test_the_statements_built_once_take_each_calls_campaign_day_and_hour(
    database_url: str, world: dict[str, str]
) -> None:
    """The counts are statements built once with bound parameters: one after another in a
    session, each call counts its own campaign, day and hour."""
    url, tz = database_url, "Europe/Moscow"
    alice = uuid.UUID(world["alice-1"])
    with session_scope(url) as session:
        today = take_snapshot(session, alice, NOW, settings(url))
        yesterday = take_snapshot(session, alice, YESTERDAY, settings(url))
        bob = take_snapshot(session, uuid.UUID(world["bob"]), NOW, settings(url))
        assert (today.sent_today_by_creator, yesterday.sent_today_by_creator) == (3, 1)
        assert bob.sent_today_by_creator == 2
        # All campaigns' sends this hour (not the test email), then Alice's first alone.
        assert sends_this_hour(session, NOW, tz) == 6
        assert sends_this_hour(session, NOW, tz, alice) == 2
        assert sends_this_hour(session, YESTERDAY, tz, alice) == 1
        assert sends_this_hour(session, NOW + timedelta(hours=1), tz) == 0


def test_a_campaign_without_a_creator_counts_only_its_own_sends(
    database_url: str, world: dict[str, str]
) -> None:
    orphan = snapshot(database_url, world["orphan"])
    assert orphan.sent_today_by_creator == 1
    with session_scope(database_url) as session:
        row = session.get(Campaign, uuid.UUID(world["orphan"]))
        assert row is not None
        assert sent_today(session, row, NOW, "Europe/Moscow") == 1


def test_no_account_and_no_quota_read_as_zero(database_url: str) -> None:
    user = seed_data.add_user(database_url)
    campaign = seed_data.add_campaign(database_url, user, 2)
    seed_data.sql_execute(database_url, "DELETE FROM mailer_smtpbzquota")
    read = snapshot(database_url, campaign)
    assert (read.quota_available, read.limits.per_user_daily_limit) == (0, 0)
    assert (read.pending, read.sent, read.failed, read.campaign_status) == (2, 0, 0, "ready")


def test_an_unknown_campaign_is_refused(database_url: str) -> None:
    with pytest.raises(CampaignRefused, match="no campaign"):
        snapshot(database_url, str(uuid.uuid4()))


def plan(url: str, campaign: str, token: str, limits: Settings | None = None):  # type: ignore[no-untyped-def]
    with session_scope(url) as session:
        return plan_batch(
            session,
            uuid.UUID(campaign),
            NOW,
            100,
            limits or settings(url),
            Claim(token, timedelta(hours=1)),
        )


def test_the_daily_allowance_counts_today_and_what_is_claimed(
    database_url: str, world: dict[str, str]
) -> None:
    """Alice may send 6 a day: 3 went today (yesterday's does not count) and her other
    campaign's live attempt holds 2, so a batch of hers may take 1."""
    url = database_url
    seed_data.sql_execute(url, "UPDATE mailer_globalmailaccount SET per_user_daily_limit = 6")
    other = plan(url, world["alice-2"], "other")
    assert len(other.recipients) == 2
    batch = plan(url, world["alice-1"], "this")
    assert len(batch.recipients) == 1
    assert batch.limited_by == BatchLimit.QUOTA_OR_DAY


def test_the_hour_share_binds_the_allowance(database_url: str, world: dict[str, str]) -> None:
    url = database_url
    seed_data.sql_execute(url, "UPDATE mailer_globalmailaccount SET per_user_daily_limit = 0")
    tight = load_settings(database_url=url, rate_per_hour=9)  # 3 active campaigns: 3 each
    batch = plan(url, world["alice-1"], "x", tight)
    # This campaign sent 2 in this clock hour (13:00 Moscow): 1 left of its 3.
    assert len(batch.recipients) == 1
    assert batch.limited_by == BatchLimit.RATE_SHARE


def test_without_a_daily_limit_todays_sends_are_not_counted(
    database_url: str, world: dict[str, str]
) -> None:
    """Nothing is held against a limit that does not exist: the snapshot skips the count of
    today's sends (at a large CRM, its biggest scan), and the rest stays as it was."""
    seed_data.sql_execute(
        database_url, "UPDATE mailer_globalmailaccount SET per_user_daily_limit = 0"
    )
    first = snapshot(database_url, world["alice-1"])
    assert first.limits.per_user_daily_limit == 0
    assert first.sent_today_by_creator == 0
    assert (first.pending, first.sent, first.failed, first.quota_available) == (2, 3, 1, 777)
    assert first.active_campaigns == 3


def test_a_campaign_with_nothing_pending_skips_the_count_of_campaigns_sharing_the_hour(
    database_url: str, world: dict[str, str]
) -> None:
    """The count of campaigns sharing the hour scans every campaign sending (~20 ms at
    10,000), and only sizes a batch: a campaign with nothing left to send (its last
    snapshots, after its last batch) has no batch to size, so it is not read. Its other
    counts are, and the campaign still sending beside it counts it."""
    alice_2 = world["alice-2"]
    seed_data.sql_execute(
        database_url,
        "UPDATE mailer_campaignrecipient SET status = 'sent' WHERE campaign_id = :c",
        c=alice_2,
    )
    done = snapshot(database_url, alice_2)
    assert (done.pending, done.sent, done.active_campaigns) == (0, 3, 0)
    assert done.quota_available == 777
    assert snapshot(database_url, world["alice-1"]).active_campaigns == 3


def test_the_campaigns_sharing_the_hour_are_counted_up_to_the_hourly_rate(
    database_url: str, world: dict[str, str]
) -> None:
    """From the hourly rate on, every campaign's fair share is one message: the count stops
    there (at the seed's 100 an hour, a CRM with thousands sending reads 100 rows), and the
    share it gives is the one the full count gives."""
    two_an_hour = load_settings(database_url=database_url, rate_per_hour=2)
    with session_scope(database_url) as session:
        capped = take_snapshot(session, uuid.UUID(world["alice-1"]), NOW, two_an_hour)
    assert capped.active_campaigns == 2  # of the 3 sharing the hour
    assert fair_share(2, capped.active_campaigns) == fair_share(2, 3) == 1
    assert snapshot(database_url, world["alice-1"]).active_campaigns == 3  # at 100 an hour

"""Claims: exclusive per attempt, the reservations behind the quota and the daily allowance
(real PostgreSQL, no Temporal)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from activities.claims import Claim, plan_batch, release_claims
from activities.ledger import record_sent, store_quota
from activities.quota import ProviderQuota
from db.engine import get_engine, session_scope
from mailer.core.settings import Settings, load_settings
from mailer.stack import seed_data

NOW = datetime(2026, 12, 7, 10, tzinfo=UTC)  # Monday, 13:00 in Moscow
LEASE = timedelta(seconds=30)


def settings(url: str) -> Settings:
    return load_settings(database_url=url, rate_per_hour=100_000)


def plan(url: str, campaign: str, token: str, wanted: int = 100, lease: timedelta = LEASE):  # type: ignore[no-untyped-def]
    with get_engine(url).begin() as conn:  # started: only a sending campaign is planned
        conn.execute(
            text("UPDATE mailer_campaign SET status = 'sending' WHERE id = :c"), {"c": campaign}
        )
    with session_scope(url) as session:
        return plan_batch(
            session, uuid.UUID(campaign), NOW, wanted, settings(url), Claim(token, lease)
        )


def available(url: str) -> int:
    with get_engine(url).connect() as conn:
        return int(conn.scalar(text("SELECT emails_available FROM mailer_smtpbzquota")) or 0)


def send(url: str, recipient_ids: list[int]) -> None:
    with get_engine(url).connect() as conn:
        for recipient_id in recipient_ids:
            record_sent(conn, recipient_id, f"<{recipient_id}@test>", NOW)


def test_two_attempts_never_hold_one_recipient(database_url: str) -> None:
    user = seed_data.add_user(database_url)
    seed_data.set_account(database_url, smtp_port=25)
    seed_data.set_quota(database_url, 1000)
    campaign = seed_data.add_campaign(database_url, user, 10)
    first = plan(database_url, campaign, "attempt-1", wanted=6)
    second = plan(database_url, campaign, "attempt-2", wanted=6)
    first_ids = {r.id for r in first.recipients}
    second_ids = {r.id for r in second.recipients}
    assert len(first_ids) == 6 and len(second_ids) == 4 and not first_ids & second_ids
    # A dead attempt's lease runs out: its recipients can be taken again.
    expired = seed_data.add_campaign(database_url, user, 3)
    plan(database_url, expired, "dead", lease=timedelta(0))
    assert len(plan(database_url, expired, "alive").recipients) == 3


def test_a_sync_during_batches_never_counts_quota_twice(database_url: str) -> None:
    """Two campaigns race for the last 50 with a sync in between: at most 50 go out."""
    user = seed_data.add_user(database_url)
    seed_data.set_account(database_url, smtp_port=25)
    seed_data.set_quota(database_url, 50)
    one = seed_data.add_campaign(database_url, user, 40)
    two = seed_data.add_campaign(database_url, user, 40)
    a = plan(database_url, one, "a")
    b = plan(database_url, two, "b")
    assert len(a.recipients) + len(b.recipients) == 50 and available(database_url) == 0
    send(database_url, [r.id for r in a.recipients[:5]])
    # The provider has counted the 5 sent: 45 left; 45 more are claimed in flight.
    with session_scope(database_url) as session:
        store_quota(session, NOW, ProviderQuota(quota=45, tarif_quota=1000, hlimit=0, hsent=0))
    assert available(database_url) == 0
    send(database_url, [r.id for r in b.recipients])
    release_claims(get_engine(database_url), "b", campaign_id=uuid.UUID(two), unrecorded=0)
    # 35 of a's claims unsent:
    release_claims(get_engine(database_url), "a", campaign_id=uuid.UUID(one), unrecorded=0)
    assert available(database_url) == 35  # the provider's 45 less b's 10
    more = plan(database_url, one, "c")
    sent = 5 + len(b.recipients) + len(more.recipients)
    assert sent <= 50


def test_released_claims_give_their_quota_back_except_unrecorded_sends(database_url: str) -> None:
    user = seed_data.add_user(database_url)
    seed_data.set_account(database_url, smtp_port=25)
    seed_data.set_quota(database_url, 100)
    campaign = seed_data.add_campaign(database_url, user, 10)
    batch = plan(database_url, campaign, "t")
    assert available(database_url) == 90
    ids = [r.id for r in batch.recipients]
    send(database_url, ids[:3])
    # One more the server accepted, but its commit failed: its quota stays used.
    release_claims(get_engine(database_url), "t", campaign_id=uuid.UUID(campaign), unrecorded=1)
    assert available(database_url) == 90 + 6
    assert claims_held(database_url) == []
    # Recipients claimed by another live attempt: the plan says when to look again.
    assert len(plan(database_url, campaign, "u", wanted=7).recipients) == 7
    nothing = plan(database_url, campaign, "v")
    assert nothing.recipients == [] and nothing.limited_by == "retry_wait"
    assert nothing.retry_at == NOW + LEASE


def claims_held(url: str) -> list[tuple[int, str]]:
    with get_engine(url).connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, claim_token FROM mailer_campaignrecipient WHERE claim_token IS NOT NULL"
            )
        ).all()
    return [(int(r[0]), str(r[1])) for r in rows]


def test_the_daily_allowance_counts_claims_in_flight(database_url: str) -> None:
    user = seed_data.add_user(database_url)
    seed_data.set_account(database_url, smtp_port=25, daily_limit=10)
    seed_data.set_quota(database_url, 1000)
    one = seed_data.add_campaign(database_url, user, 8)
    two = seed_data.add_campaign(database_url, user, 8)
    assert len(plan(database_url, one, "x").recipients) == 8
    assert len(plan(database_url, two, "y").recipients) == 2  # 8 in flight for the creator


def test_a_campaign_paused_in_the_database_is_not_planned(database_url: str) -> None:
    user = seed_data.add_user(database_url)
    seed_data.set_account(database_url, smtp_port=25)
    seed_data.set_quota(database_url, 100)
    campaign = seed_data.add_campaign(database_url, user, 5)
    with get_engine(database_url).begin() as conn:
        conn.execute(
            text("UPDATE mailer_campaign SET status = 'paused' WHERE id = :c"), {"c": campaign}
        )
    with session_scope(database_url) as session:
        batch = plan_batch(
            session, uuid.UUID(campaign), NOW, 100, settings(database_url), Claim("t", LEASE)
        )
    assert batch.recipients == [] and batch.limited_by == "not_sending"
    assert available(database_url) == 100

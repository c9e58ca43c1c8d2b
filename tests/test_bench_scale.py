"""``bench/scale.py`` refuses a run whose fleet was never deferred at once: the first
deferral ended while other campaigns were still starting (stop 46's 10,000-campaign run
waited out its timeout instead, and printed nothing)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from bench.scale import DeferralClock, all_deferred
from db.engine import get_engine
from mailer.stack import seed_data


def defer(url: str, campaign: str, minutes_from_now: float) -> None:
    """The queue row a campaign deferred on ``transient_error`` has, ending that far from
    the database's clock."""
    with get_engine(url).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO mailer_campaignqueue (campaign_id, status, defer_reason,"
                " deferred_until, consecutive_transient_errors, last_error, queued_at)"
                " VALUES (:c, 'pending', 'transient_error', now() + :after, 0, '', now())"
            ),
            {"c": campaign, "after": timedelta(minutes=minutes_from_now)},
        )


def test_waits_while_deferrals_last_and_passes_once_every_campaign_deferred(
    database_url: str,
) -> None:
    user = seed_data.add_user(database_url)
    first, second = (seed_data.add_campaign(database_url, user, 1) for _ in range(2))
    clock = DeferralClock()
    assert not all_deferred(database_url, 2, clock)  # nothing deferred yet
    defer(database_url, first, 5)
    assert not all_deferred(database_url, 2, clock)
    defer(database_url, second, 5)
    assert all_deferred(database_url, 2, clock)


def test_refuses_the_run_once_the_first_deferral_ended_before_the_last_campaign_deferred(
    database_url: str,
) -> None:
    user = seed_data.add_user(database_url)
    first = seed_data.add_campaign(database_url, user, 1)
    seed_data.add_campaign(database_url, user, 1)
    clock = DeferralClock()
    defer(database_url, first, 5)
    assert not all_deferred(database_url, 2, clock)
    # The early campaign woke and deferred again: its row moved on, the clock did not.
    with get_engine(database_url).begin() as conn:
        conn.execute(
            text("UPDATE mailer_campaignqueue SET deferred_until = now() + interval '1 hour'")
        )
    assert clock.first_end is not None
    clock.first_end -= timedelta(minutes=6)  # as if its first deferral ended a minute ago
    with pytest.raises(SystemExit, match=r"1 of 2 campaigns deferred.*--retry-delay-minutes"):
        all_deferred(database_url, 2, clock)

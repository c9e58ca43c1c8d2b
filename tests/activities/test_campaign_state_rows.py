"""A campaign's start and the workflow's state, written into the seed's tables
(``ledger.start_campaign``, ``mark_started``, ``mark_scheduled``, ``record_state``: one
statement each), against real PostgreSQL: the checks, the compare-and-set, the queue row's
times, a queue row added where the CRM's tables have no column defaults, and no write where
nothing changed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from activities.ledger import (
    CampaignRefused,
    mark_scheduled,
    mark_started,
    record_state,
    start_campaign,
)
from db.engine import get_engine, session_scope
from mailer.core.settings import load_settings
from mailer.stack import seed_data

NOW = datetime(2026, 12, 7, 10, tzinfo=UTC)


def record(url: str, campaign: str, now: datetime = NOW, **changes: Any) -> bool:
    values: dict[str, Any] = {
        "campaign_status": "sending",
        "queue_status": "pending",
        "defer_reason": "",
        "deferred_until": None,
        "consecutive_transient_errors": 0,
        "last_error": "",
        **changes,
    }
    with session_scope(url) as session:
        return record_state(session, uuid.UUID(campaign), now, **values)


def drop_queue_defaults(url: str) -> None:
    """The queue table as the CRM's Django made it: no column defaults in the database."""
    with get_engine(url).begin() as conn:
        for column in ("status", "defer_reason", "consecutive_transient_errors", "last_error"):
            conn.execute(text(f"ALTER TABLE mailer_campaignqueue ALTER {column} DROP DEFAULT"))
        conn.execute(text("ALTER TABLE mailer_campaignqueue ALTER queued_at DROP DEFAULT"))


def start(url: str, campaign: str, now: datetime = NOW, **settings: Any) -> str:
    """The start activity's database part; the campaign's status before it."""
    checked = load_settings(database_url=url, **settings)
    with session_scope(url) as session:
        check = start_campaign(session, uuid.UUID(campaign), now, checked)
        mark_started(session, uuid.UUID(campaign), now)
    return check.status


def rows(url: str, campaign: str) -> dict[str, Any]:
    with get_engine(url).connect() as conn:
        row = conn.execute(
            text(
                "SELECT c.status AS campaign_status, c.finished_at AS campaign_finished_at,"
                " c.updated_at, c.xmin::text AS campaign_version, q.status, q.defer_reason,"
                " q.deferred_until, q.consecutive_transient_errors, q.last_error, q.started_at,"
                " q.queued_at, q.finished_at"
                " FROM mailer_campaign c LEFT JOIN mailer_campaignqueue q ON q.campaign_id = c.id"
                " WHERE c.id = :c"
            ),
            {"c": campaign},
        ).one()
    return dict(row._mapping)


def test_a_deferral_is_mirrored_and_a_processing_row_keeps_its_start(database_url: str) -> None:
    campaign = seed_data.add_campaign(database_url, seed_data.add_user(database_url), 2)
    until = NOW + timedelta(hours=1)
    assert record(database_url, campaign, queue_status="processing")
    assert record(database_url, campaign, NOW + timedelta(minutes=1), queue_status="processing")
    assert rows(database_url, campaign)["started_at"] == NOW  # still sending since NOW

    assert record(
        database_url,
        campaign,
        queue_status="pending",
        defer_reason="transient_error",
        deferred_until=until,
        consecutive_transient_errors=3,
        last_error="421 4.7.0 try again later",
    )
    row = rows(database_url, campaign)
    assert (row["campaign_status"], row["status"], row["defer_reason"]) == (
        "sending",
        "pending",
        "transient_error",
    )
    assert (row["deferred_until"], row["consecutive_transient_errors"]) == (until, 3)
    assert row["last_error"] == "421 4.7.0 try again later"
    assert (row["started_at"], row["finished_at"], row["campaign_finished_at"]) == (None,) * 3


def test_the_campaign_row_is_written_only_when_its_status_changes(database_url: str) -> None:
    campaign = seed_data.add_campaign(database_url, seed_data.add_user(database_url), 1)
    assert record(database_url, campaign, queue_status="processing")
    before = rows(database_url, campaign)
    assert record(database_url, campaign, defer_reason="rate_per_hour")
    after = rows(database_url, campaign)
    # A deferral leaves a sending campaign's row as it was: no new row version, no trigger.
    assert after["campaign_version"] == before["campaign_version"]
    assert after["defer_reason"] == "rate_per_hour"

    assert record(database_url, campaign, NOW + timedelta(hours=2), campaign_status="sent")
    done = rows(database_url, campaign)
    assert done["campaign_version"] != before["campaign_version"]
    assert (done["campaign_status"], done["campaign_finished_at"]) == (
        "sent",
        NOW + timedelta(hours=2),
    )
    assert done["finished_at"] == NOW + timedelta(hours=2)
    assert done["updated_at"] > before["updated_at"]


def test_nothing_is_written_unless_the_campaign_is_in_an_expected_status(
    database_url: str,
) -> None:
    campaign = seed_data.add_campaign(database_url, seed_data.add_user(database_url), 1)
    assert record(database_url, campaign, queue_status="processing")
    with get_engine(database_url).begin() as conn:  # the playbook's SQL pause
        conn.execute(
            text("UPDATE mailer_campaign SET status = 'paused' WHERE id = :c"), {"c": campaign}
        )
    before = rows(database_url, campaign)
    assert not record(
        database_url,
        campaign,
        defer_reason="outside_hours",
        expected_statuses=("sending",),
    )
    assert rows(database_url, campaign) == before
    assert record(database_url, campaign, campaign_status="paused", expected_statuses=("paused",))
    assert not record(database_url, str(uuid.uuid4()))  # a campaign that is gone


def test_a_missing_queue_row_is_added_in_tables_without_column_defaults(
    database_url: str,
) -> None:
    campaign = seed_data.add_campaign(database_url, seed_data.add_user(database_url), 1)
    drop_queue_defaults(database_url)
    assert record(database_url, campaign, queue_status="processing", last_error="")
    row = rows(database_url, campaign)
    assert (row["status"], row["defer_reason"], row["consecutive_transient_errors"]) == (
        "processing",
        "",
        0,
    )
    assert (row["queued_at"], row["started_at"], row["finished_at"]) == (NOW, NOW, None)


def test_a_start_marks_the_campaign_sending_and_its_queue_row_pending_afresh(
    database_url: str,
) -> None:
    campaign = seed_data.add_campaign(database_url, seed_data.add_user(database_url), 2)
    assert record(  # a queue row left by an earlier life: deferred, errors counted, finished
        database_url,
        campaign,
        NOW - timedelta(days=1),
        campaign_status="ready",
        queue_status="processing",
        defer_reason="transient_error",
        deferred_until=NOW - timedelta(hours=20),
        consecutive_transient_errors=4,
        last_error="421 busy",
    )
    assert start(database_url, campaign) == "ready"
    row = rows(database_url, campaign)
    assert row["campaign_status"] == "sending"
    assert (row["status"], row["defer_reason"], row["deferred_until"]) == ("pending", "", None)
    assert (row["consecutive_transient_errors"], row["started_at"], row["finished_at"]) == (
        0,
        None,
        None,
    )
    assert row["last_error"] == "421 busy"  # the last reply stays readable
    with get_engine(database_url).connect() as conn:
        started_at = conn.scalar(
            text("SELECT started_at FROM mailer_campaign WHERE id = :c"), {"c": campaign}
        )
    assert started_at == NOW

    # A retried start passes, and the campaign keeps the time it first started.
    assert start(database_url, campaign, NOW + timedelta(minutes=5)) == "sending"
    with get_engine(database_url).connect() as conn:
        again = conn.scalar(
            text("SELECT started_at FROM mailer_campaign WHERE id = :c"), {"c": campaign}
        )
    assert again == NOW


def test_a_scheduled_start_leaves_the_campaign_ready_with_its_start_time(
    database_url: str,
) -> None:
    campaign = seed_data.add_campaign(database_url, seed_data.add_user(database_url), 1)
    drop_queue_defaults(database_url)
    at = NOW + timedelta(days=2)
    with session_scope(database_url) as session:
        start_campaign(session, uuid.UUID(campaign), NOW, load_settings(database_url=database_url))
        mark_scheduled(session, uuid.UUID(campaign), at, NOW)
    row = rows(database_url, campaign)
    assert (row["campaign_status"], row["status"], row["defer_reason"]) == ("ready", "pending", "")
    assert (row["deferred_until"], row["queued_at"], row["consecutive_transient_errors"]) == (
        at,
        NOW,
        0,
    )


def test_a_start_is_refused_for_a_campaign_not_ready_too_large_or_gone(
    database_url: str,
) -> None:
    user = seed_data.add_user(database_url)
    large = seed_data.add_campaign(database_url, user, 3)
    with pytest.raises(CampaignRefused, match=r"has 3 recipients, more than .*=2"):
        start(database_url, large, max_campaign_recipients=2)
    paused = seed_data.add_campaign(database_url, user, 1)
    with get_engine(database_url).begin() as conn:
        conn.execute(
            text("UPDATE mailer_campaign SET status = 'paused' WHERE id = :c"), {"c": paused}
        )
    with pytest.raises(CampaignRefused, match="is paused, not ready to start"):
        start(database_url, paused)
    with pytest.raises(CampaignRefused, match="no campaign"):
        start(database_url, str(uuid.uuid4()))
    assert rows(database_url, large)["status"] is None  # refused: no queue row written

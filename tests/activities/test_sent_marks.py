"""The send path's "sent" marks on their own asynchronous connection (real PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import make_url, text

from activities.ledger import record_sent
from activities.sending import _discard
from activities.sent_marks import SentMarks
from db.engine import get_engine
from mailer.stack import seed_data
from tests.support.harness import wait_for

NOW = datetime(2026, 12, 7, 10, tzinfo=UTC)


def recipient_ids(url: str, campaign: str) -> list[int]:
    with get_engine(url).connect() as conn:
        query = "SELECT id FROM mailer_campaignrecipient WHERE campaign_id = :c ORDER BY id"
        return list(conn.scalars(text(query), {"c": campaign}))


def ledger_rows(url: str, recipient_id: int) -> tuple[tuple[object, ...], list[tuple[object, ...]]]:
    with get_engine(url).connect() as conn:
        recipient = conn.execute(
            text(
                "SELECT status, message_id, sent_at, claim_token FROM mailer_campaignrecipient"
                " WHERE id = :r"
            ),
            {"r": recipient_id},
        ).one()
        logs = conn.execute(
            text(
                "SELECT status, message_id, smtp_code, created_at FROM mailer_sendlog"
                " WHERE recipient_id = :r"
            ),
            {"r": recipient_id},
        ).all()
    return tuple(recipient), [tuple(row) for row in logs]


async def test_a_mark_is_committed_at_once_and_written_as_the_ledger_writes_it(
    database_url: str,
) -> None:
    user = seed_data.add_user(database_url)
    campaign = seed_data.add_campaign(database_url, user, 2)
    first, second = recipient_ids(database_url, campaign)
    with get_engine(database_url).begin() as conn:  # a claim, as a planned batch holds it
        conn.execute(text("UPDATE mailer_campaignrecipient SET claim_token = 'attempt'"))
    async with await SentMarks.connect(database_url) as marks:
        await marks.record(first, "<first@test>", NOW)
        # Seen from another connection before the batch ends: committed, not just written.
        assert ledger_rows(database_url, first) == (
            ("sent", "<first@test>", NOW, None),
            [("sent", "<first@test>", 250, NOW)],
        )
        await marks.record(first, "<again@test>", NOW)  # a repeat writes nothing more
        assert len(ledger_rows(database_url, first)[1]) == 1
    with get_engine(database_url).connect() as conn:  # the synchronous form, same statement
        record_sent(conn, second, "<second@test>", NOW)
    assert ledger_rows(database_url, second) == (
        ("sent", "<second@test>", NOW, None),
        [("sent", "<second@test>", 250, NOW)],
    )


async def test_its_connection_names_itself_mailer(database_url: str) -> None:
    """Migration 0006's trigger takes only other writers' changes as the CRM's requests."""
    async with await SentMarks.connect(database_url):
        with get_engine(database_url).connect() as conn:
            names = conn.scalars(
                text(
                    "SELECT application_name FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).all()
    assert "mailer" in names and all(name == "mailer" for name in names), names


async def test_database_errors_come_out_as_sqlalchemys_without_the_parameters(
    database_url: str,
) -> None:
    user = seed_data.add_user(database_url)
    campaign = seed_data.add_campaign(database_url, user, 1)
    (recipient,) = recipient_ids(database_url, campaign)
    address = "secret.person@example.com"
    async with await SentMarks.connect(database_url) as marks:
        with pytest.raises(sa_exc.DBAPIError) as raised:  # longer than the column takes
            await marks.record(recipient, f"<{address}>" + "x" * 300, NOW)
    assert not isinstance(raised.value, sa_exc.OperationalError)
    assert "too long" in str(raised.value) and address not in str(raised.value)
    assert ledger_rows(database_url, recipient)[0][0] == "pending"  # nothing written

    closed_port = make_url(database_url).set(port=9).render_as_string(hide_password=False)
    with pytest.raises(sa_exc.OperationalError):  # what activity_errors reports as unreachable
        await SentMarks.connect(closed_port)


def open_connections(url: str) -> int:
    with get_engine(url).connect() as conn:
        query = (
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(conn.scalar(text(query)) or 0)


async def test_a_batch_that_cannot_open_its_smtp_session_closes_the_marks_connection(
    database_url: str,
) -> None:
    """The marks' connection is made while the SMTP session opens; a batch that ends there
    (the server refused the connection) does not leave it open."""
    before = open_connections(database_url)
    opening = asyncio.ensure_future(SentMarks.connect(database_url))
    await _discard(opening)
    assert opening.done()
    # A closed connection's backend leaves pg_stat_activity a moment after the close.
    await wait_for(
        lambda: open_connections(database_url) == before, timeout=10, what="the backend gone"
    )

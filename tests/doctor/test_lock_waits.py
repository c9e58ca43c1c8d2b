"""``mailer doctor`` finds mailer's statements waiting for a lock on a real PostgreSQL, and
names the session holding it: an operator's transaction left open at 3 a.m. is a one-line
diagnosis, not a batch that silently stops moving."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from mailer.core.settings import Settings
from mailer.doctor.probes import look_at_database
from mailer.stack import seed_data
from tests.support.harness import wait_for


@pytest.fixture
def operators_open_transaction(database_url: str) -> Iterator[tuple[psycopg.Connection, str]]:
    """psql with a campaign's recipients locked (an UPDATE, then nothing: no COMMIT)."""
    campaign = seed_data.add_campaign(database_url, seed_data.add_user(database_url), 1)
    conn = seed_data.connection_as(database_url, "psql", autocommit=False)
    conn.execute(
        "UPDATE mailer_campaignrecipient SET status = status WHERE campaign_id = %s", (campaign,)
    )
    yield conn, campaign
    conn.rollback()
    conn.close()


async def test_a_mailer_statement_held_up_by_an_open_transaction_names_its_holder(
    database_url: str, operators_open_transaction: tuple[psycopg.Connection, str]
) -> None:
    holder, campaign = operators_open_transaction
    settings = Settings(database_url=database_url)
    assert look_at_database(settings, datetime.now(UTC)).lock_waits == []

    def mailer_marks_sent() -> None:  # as the send path's mark would, on its own connection
        with seed_data.connection_as(database_url, "mailer") as c:
            c.execute(
                "UPDATE mailer_campaignrecipient SET status = 'sent' WHERE campaign_id = %s",
                (campaign,),
            )

    waiter = threading.Thread(target=mailer_marks_sent)
    waiter.start()
    try:
        await wait_for(
            lambda: look_at_database(settings, datetime.now(UTC)).lock_waits,
            timeout=30,
            what="the doctor to see the wait",
        )
        [wait] = look_at_database(settings, datetime.now(UTC)).lock_waits
        assert wait.application == "mailer"
        [held_by] = wait.holders
        assert held_by.pid == holder.info.backend_pid
        assert (held_by.application, held_by.state) == ("psql", "idle in transaction")
        assert held_by.transaction_age is not None and held_by.transaction_age >= wait.waiting
    finally:
        holder.rollback()  # the operator gives up: mailer's statement goes through
        waiter.join(30)
    assert not waiter.is_alive()
    assert look_at_database(settings, datetime.now(UTC)).lock_waits == []

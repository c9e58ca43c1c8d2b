"""The send path's "sent" marks on their own asynchronous connection (real PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg.waiting import Ready, Wait
from sqlalchemy import exc as sa_exc
from sqlalchemy import make_url, text

from activities.ledger import record_sent
from activities.sending import _give_back
from activities.sent_marks import MarksPool, SentMarks, _resumed
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


async def test_a_batch_that_cannot_open_its_smtp_session_gives_the_marks_connection_back(
    database_url: str,
) -> None:
    """The marks' connection is taken while the SMTP session opens; a batch that ends there
    (the server refused the connection) hands it back to the pool, which keeps it for the
    next batch, and leaves nothing else open."""
    before = open_connections(database_url)
    pool = MarksPool(database_url, keep=2)
    taking = asyncio.ensure_future(pool.take())
    await _give_back(pool, taking)
    assert taking.done() and pool.kept == 1
    assert open_connections(database_url) == before + 1
    await pool.close()
    # A closed connection's backend leaves pg_stat_activity a moment after the close.
    await wait_for(
        lambda: open_connections(database_url) == before, timeout=10, what="the backend gone"
    )


def backend_pids(url: str) -> set[int]:
    with get_engine(url).connect() as conn:
        query = (
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return set(conn.scalars(text(query)))


async def test_the_next_batch_marks_on_the_connection_the_last_one_gave_back(
    database_url: str,
) -> None:
    """One backend for batch after batch: no connection made per batch."""
    user = seed_data.add_user(database_url)
    campaign = seed_data.add_campaign(database_url, user, 2)
    pool = MarksPool(database_url, keep=2)
    backends = []
    try:
        for recipient in recipient_ids(database_url, campaign):
            marks = await pool.take()
            backends.append(marks._conn.pgconn.backend_pid)
            await marks.record(recipient, f"<{recipient}@test>", NOW)
            await pool.give_back(marks)
        assert backends[0] == backends[1] and pool.kept == 1
        assert marks._conn._watched is None  # a kept connection's socket is not watched
    finally:
        await pool.close()
    assert [ledger_rows(database_url, r)[0][0] for r in recipient_ids(database_url, campaign)] == [
        "sent"
    ] * 2


async def test_a_kept_connection_whose_backend_was_terminated_is_not_handed_out(
    database_url: str,
) -> None:
    """A backend terminated while its connection was kept (an operator's
    pg_terminate_backend, a PostgreSQL restart) is noticed before the next batch takes it,
    without a round trip: that batch gets a new connection, and its first mark (after a
    message the server accepted) is written."""
    user = seed_data.add_user(database_url)
    campaign = seed_data.add_campaign(database_url, user, 1)
    (recipient,) = recipient_ids(database_url, campaign)
    pool = MarksPool(database_url, keep=2)
    try:
        kept = await pool.take()
        terminated = kept._conn.pgconn.backend_pid
        await pool.give_back(kept)
        with get_engine(database_url).connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": terminated})
        await wait_for(
            lambda: terminated not in backend_pids(database_url), timeout=10, what="it gone"
        )
        assert not kept.reusable()
        marks = await pool.take()
        assert marks is not kept and marks._conn.pgconn.backend_pid != terminated
        assert kept._conn.closed and pool.kept == 0
        await marks.record(recipient, "<after-a-restart@test>", NOW)
        await pool.give_back(marks)
    finally:
        await pool.close()
    assert ledger_rows(database_url, recipient)[0][0] == "sent"


async def test_a_connection_in_the_middle_of_a_statement_is_not_kept(database_url: str) -> None:
    """A batch cancelled while a mark waited for its reply gives back a connection whose
    statement is still under way: it is closed, never handed to the next batch."""
    pool = MarksPool(database_url, keep=2)
    marks = await pool.take()
    marks._conn.pgconn.send_query(b"SELECT pg_sleep(5)")  # under way, its reply unread
    assert not marks.reusable()
    await pool.give_back(marks)
    assert pool.kept == 0 and marks._conn.closed


async def test_no_more_are_kept_than_asked_and_none_past_the_idle_time(
    database_url: str,
) -> None:
    before = open_connections(database_url)
    pool = MarksPool(database_url, keep=2, idle_seconds=0.5)
    taken = [await pool.take() for _ in range(3)]
    for marks in taken:
        await pool.give_back(marks)
    assert pool.kept == 2 and taken[2]._conn.closed  # the third was one too many
    await wait_for(lambda: pool.kept == 0, timeout=10, what="the kept ones expired")
    await wait_for(
        lambda: open_connections(database_url) == before, timeout=10, what="their backends gone"
    )
    assert all(marks._conn.closed for marks in taken)


async def test_the_marks_reader_is_registered_once_and_gone_with_the_connection(
    database_url: str,
) -> None:
    """The socket's reader stays registered across marks (psycopg's own wait adds and removes
    one per reply) and is removed before the socket closes, whose number the next
    connection may reuse."""
    user = seed_data.add_user(database_url)
    campaign = seed_data.add_campaign(database_url, user, 3)
    loop = asyncio.get_running_loop()
    added: list[int] = []
    add_reader = loop.add_reader

    def counting(fd: int, callback: Any, *args: Any) -> None:
        added.append(fd)
        add_reader(fd, callback, *args)

    marks = await SentMarks.connect(database_url)  # (the handshake's own waits not counted)
    socket = marks._conn.pgconn.socket
    loop.add_reader = counting  # type: ignore[method-assign,assignment]
    try:
        for recipient in recipient_ids(database_url, campaign):
            await marks.record(recipient, f"<{recipient}@test>", NOW)
        await marks.close()
    finally:
        loop.add_reader = add_reader  # type: ignore[method-assign]
    assert added == [socket]
    assert not loop.remove_reader(socket)  # none left behind
    assert [ledger_rows(database_url, r)[0][0] for r in recipient_ids(database_url, campaign)] == [
        "sent"
    ] * 3


async def test_a_server_hanging_up_between_marks_fails_the_next_mark_as_unreachable(
    database_url: str,
) -> None:
    """Between two marks nothing waits on the socket: its end-of-file stops the reader
    (a registered reader on a readable socket would fire at every turn of the loop), and the
    next mark fails as a lost connection, which the batch reports as the database down."""
    user = seed_data.add_user(database_url)
    campaign = seed_data.add_campaign(database_url, user, 2)
    first, second = recipient_ids(database_url, campaign)
    async with await SentMarks.connect(database_url) as marks:
        await marks.record(first, "<first@test>", NOW)
        backend = marks._conn.pgconn.backend_pid
        with get_engine(database_url).connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        await wait_for(lambda: marks._conn._watched is None, timeout=10, what="the reader gone")
        with pytest.raises(sa_exc.OperationalError):
            await marks.record(second, "<second@test>", NOW)
    assert ledger_rows(database_url, first)[0][0] == "sent"
    assert ledger_rows(database_url, second)[0][0] == "pending"


def test_a_generator_handed_on_mid_way_resumes_where_it_stood() -> None:
    """A wait other than for reading goes to psycopg's own wait from where the generator
    stands: the state it yielded last comes first, then the rest, then its result."""

    def protocol() -> Generator[Wait, Ready | int, str]:
        got = yield Wait.R
        assert got == Ready.R
        got = yield Wait.W
        got2 = yield Wait.RW
        return f"done after {int(got)} and {int(got2)}"

    gen = protocol()
    assert next(gen) == Wait.R
    state = gen.send(Ready.R)  # our wait took the read; the write is handed on
    handed = _resumed(state, gen)
    assert next(handed) == Wait.W
    assert handed.send(Ready.W) == Wait.RW
    with pytest.raises(StopIteration) as finished:
        handed.send(Ready.RW)
    assert finished.value.value == f"done after {int(Ready.W)} and {int(Ready.RW)}"

"""A send batch's "sent" marks, committed from the event loop on a connection of their own.

The mark after each accepted message is the send path's one write per email. Through a
thread (SQLAlchemy's connections block) it costs a hand-off each way on top of the round
trip: two thirds of its CPU, and a wait the next message often has to sit through. Here it
is one prepared statement on psycopg's asynchronous connection in autocommit — the same
statement and the same durable commit per message (``bench/throughput.py``: 0.29 → 0.09 ms
of CPU a mark). Errors come out as SQLAlchemy's, so an activity reports them like any
other database error (:func:`activities.mailer_activities.activity_errors`).
"""

from __future__ import annotations

from datetime import datetime
from types import TracebackType

import psycopg
from sqlalchemy import exc as sa_exc
from sqlalchemy import make_url

from activities.ledger import RECORD_SENT_SQL
from db.engine import APPLICATION_NAME

# A database that does not answer a connection attempt fails the batch, like a pool
# checkout would, instead of holding it forever.
CONNECT_TIMEOUT_SECONDS = 10


def libpq_conninfo(sqlalchemy_url: str) -> str:
    """``postgresql+psycopg://…`` as libpq takes it (its query options kept)."""
    return (
        make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )


def as_sqlalchemy_error(error: psycopg.Error) -> sa_exc.DBAPIError:
    """The driver's error wrapped as SQLAlchemy wraps it (no statement, no parameters: they
    hold addresses)."""
    lost = isinstance(error, psycopg.OperationalError)  # cannot connect, or the link died
    wrapper = sa_exc.OperationalError if lost else sa_exc.DBAPIError
    return wrapper(None, None, error, hide_parameters=True)


class SentMarks:
    """One batch's connection for its "sent" marks: ``await SentMarks.connect(url)``, then
    :meth:`record` after each accepted message and :meth:`close` (or ``async with``)."""

    def __init__(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        self._conn = conn
        # One cursor for every mark: ``conn.execute`` would build a new one each time
        # (3-11 % of a mark's CPU, measured on 2,000 marks each way).
        self._cursor = conn.cursor()

    @classmethod
    async def connect(cls, sqlalchemy_url: str) -> SentMarks:
        try:
            conn = await psycopg.AsyncConnection.connect(
                libpq_conninfo(sqlalchemy_url),
                autocommit=True,  # each mark is its own transaction: one round trip
                application_name=APPLICATION_NAME,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
            )
        except psycopg.Error as error:
            raise as_sqlalchemy_error(error) from None
        return cls(conn)

    async def close(self) -> None:
        await self._conn.close()

    async def __aenter__(self) -> SentMarks:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def record(self, recipient_id: int, message_id: str, now: datetime) -> None:
        """After the server's 250: the recipient is sent and its send log written, committed
        when this returns (see :data:`activities.ledger.RECORD_SENT_SQL`)."""
        params = {"recipient_id": recipient_id, "message_id": message_id, "now": now}
        try:
            await self._cursor.execute(RECORD_SENT_SQL, params, prepare=True)
        except psycopg.Error as error:
            raise as_sqlalchemy_error(error) from None

"""A send batch's "sent" marks, committed from the event loop on a connection of their own.

The mark after each accepted message is the send path's one write per email. Through a
thread (SQLAlchemy's connections block) it costs a hand-off each way on top of the round
trip: two thirds of its CPU, and a wait the next message often has to sit through. Here it
is one prepared statement on psycopg's asynchronous connection in autocommit — the same
statement and the same durable commit per message (``bench/throughput.py``: 0.29 → 0.09 ms
of CPU a mark). Errors come out as SQLAlchemy's, so an activity reports them like any
other database error (:func:`activities.mailer_activities.activity_errors`). The worker
keeps these connections from one batch to the next (:class:`MarksPool`).
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import time
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

import psycopg
from psycopg.abc import PQGen
from psycopg.pq import TransactionStatus
from psycopg.waiting import Ready, Wait
from sqlalchemy import exc as sa_exc
from sqlalchemy import make_url

from activities.ledger import RECORD_SENT_SQL
from db.engine import APPLICATION_NAME

# A mark's wait with no word from the server for this long starts again on a fresh reader
# (psycopg's own wait wakes as often, for the same reason and for Ctrl-C).
QUIET_SECONDS = 0.1

# A database that does not answer a connection attempt fails the batch, like a pool
# checkout would, instead of holding it forever.
CONNECT_TIMEOUT_SECONDS = 10

# A marks connection a batch gave back is kept for the next batch this long, then closed:
# a worker that stops sending does not hold PostgreSQL backends for good.
KEPT_IDLE_SECONDS = 60.0


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


class _MarksConnection(psycopg.AsyncConnection[tuple[object, ...]]):
    """psycopg's asynchronous connection, waiting for its replies with a reader on its socket
    that stays registered from one mark to the next.

    psycopg's ``wait_async`` adds a reader for every reply it waits for and removes it after;
    on uvloop that reader is a libuv poll handle, made and closed each time. Keeping it saves
    about a fifth of a mark's CPU (``bench/marks.py``). Only a wait for reading takes this
    path (a mark's reply); anything else (a write that would block) is handed to psycopg's
    own wait, from where the generator stands.

    A wait with no word for :data:`QUIET_SECONDS` (to twice that) starts again on a fresh
    reader, as psycopg's own wait does at every reply: libuv stops a poll handle for good
    when its socket reports an error (a server that hung up), and a handle kept across
    waits would then never fire again.
    """

    _loop: asyncio.AbstractEventLoop | None = None
    _watched: int | None = None  # the socket our reader is registered on
    _reply: asyncio.Future[Ready] | None = None  # the wait in progress
    _waits = 0  # waits begun so far
    _idle_calls = 0  # the reader's calls in a row with no wait under way
    _watchdog: asyncio.TimerHandle | None = None

    async def wait(
        self, gen: PQGen[psycopg.abc.RV], interval: float = 0.1, timeout: float | None = None
    ) -> psycopg.abc.RV:
        if timeout is not None:
            return await super().wait(gen, interval, timeout)
        try:
            state = next(gen)
            while state == Wait.R:
                state = gen.send(await self._readable())
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        return await super().wait(_resumed(state, gen), interval)

    async def _readable(self) -> Ready:
        """``Ready.R`` once the socket can be read; ``Ready.NONE`` after a quiet spell (the
        generator then asks again, and the next wait starts on a fresh reader)."""
        loop = asyncio.get_running_loop()
        socket = self.pgconn.socket
        if (self._watched, self._loop) != (socket, loop):
            self._stop_watching()
            loop.add_reader(socket, self._on_readable)
            self._watched, self._loop = socket, loop
        reply: asyncio.Future[Ready] = loop.create_future()
        self._reply = reply
        self._waits += 1
        if self._watchdog is None:
            # One timer for many waits (a mark's reply takes a fraction of a millisecond;
            # a timer per wait would cost as much as the reader saves).
            self._watchdog = loop.call_later(QUIET_SECONDS, self._on_watchdog, self._waits)
        try:
            return await reply
        finally:
            self._reply = None

    def _on_readable(self) -> None:
        if self._reply is not None:
            self._idle_calls = 0
            if not self._reply.done():
                self._reply.set_result(Ready.R)
            # Else it fired again before the waiting mark ran to read the reply.
            return
        # Nothing waits. Once is the loop's stale news of a reply the last mark has read
        # since (asyncio polls before it runs the woken mark); twice in a row, the socket
        # stays readable (the server said something unasked, or hung up): stop watching, or
        # the reader would fire at every turn of the loop.
        self._idle_calls += 1
        if self._idle_calls > 1:
            self._stop_watching()

    def _on_watchdog(self, waits: int) -> None:
        """A wait that is still the one under way when the timer was set has been quiet
        for a whole spell: it ends with ``Ready.NONE``, and the next starts afresh."""
        self._watchdog = None
        if self._reply is None or self._reply.done() or self._loop is None:
            return  # nothing waits: the next wait sets the timer again
        if self._waits == waits:
            self._stop_watching()
            self._reply.set_result(Ready.NONE)
        else:
            self._watchdog = self._loop.call_later(QUIET_SECONDS, self._on_watchdog, self._waits)

    def _stop_watching(self) -> None:
        self._idle_calls = 0
        if self._watched is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._watched)
        self._watched = self._loop = None

    async def close(self) -> None:
        # Before the socket closes and its number is reused.
        self._stop_watching()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        await super().close()


def _resumed(state: Wait, gen: PQGen[psycopg.abc.RV]) -> PQGen[psycopg.abc.RV]:
    """``gen`` from where it stands: first ``state`` again, then the rest of it."""
    ready = yield state
    while True:
        try:
            state = gen.send(ready)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        ready = yield state


class SentMarks:
    """One batch's connection for its "sent" marks: ``await SentMarks.connect(url)``, then
    :meth:`record` after each accepted message and :meth:`close` (or ``async with``)."""

    def __init__(self, conn: _MarksConnection) -> None:
        self._conn = conn
        # One cursor for every mark: ``conn.execute`` would build a new one each time
        # (3-11 % of a mark's CPU, measured on 2,000 marks each way).
        self._cursor = conn.cursor()

    @classmethod
    async def connect(cls, sqlalchemy_url: str) -> SentMarks:
        try:
            conn = await _MarksConnection.connect(
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

    def reusable(self) -> bool:
        """Whether another batch may take this connection over: open, no statement under
        way, and nothing from the server waiting on its socket. An idle connection in
        autocommit is told nothing unasked; a backend that was terminated (an operator,
        a restart) says so and hangs up, which leaves the socket readable. Checked without
        a round trip, so keeping a connection costs nothing a new one would not."""
        conn = self._conn
        if conn.closed or conn.broken:
            return False
        if conn.info.transaction_status != TransactionStatus.IDLE:
            return False
        poll = select.poll()
        poll.register(conn.pgconn.socket, select.POLLIN | select.POLLERR | select.POLLHUP)
        return not poll.poll(0)

    def park(self) -> None:
        """Stop watching the socket while no batch uses the connection (the next mark
        watches it again)."""
        self._conn._stop_watching()

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


@dataclass
class _Kept:
    marks: SentMarks
    loop: asyncio.AbstractEventLoop
    since: float  # time.monotonic() when it was given back


class MarksPool:
    """The worker's "sent" marks connections, kept from one batch to the next.

    A new connection costs about 4 ms of PostgreSQL's CPU (a backend started, its catalog
    caches filled) and 1 ms of the worker's, once per batch: at 10,000 small campaigns
    more than any of their statements (``bench/scale.py``). A batch takes one with
    :meth:`take` and hands it back with :meth:`give_back`; one that is no longer
    :meth:`SentMarks.reusable` is closed instead, and the batch gets a fresh one, so a
    PostgreSQL restart never fails the first mark of the next batch. At most ``keep``
    are kept, each for :data:`KEPT_IDLE_SECONDS`, and only for the event loop that made it.
    """

    def __init__(
        self, sqlalchemy_url: str, *, keep: int, idle_seconds: float = KEPT_IDLE_SECONDS
    ) -> None:
        self.sqlalchemy_url = sqlalchemy_url
        self.keep = keep
        self.idle_seconds = idle_seconds
        self._kept: list[_Kept] = []
        self._expiry: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def kept(self) -> int:
        """Connections kept for the next batches."""
        return len(self._kept)

    async def take(self) -> SentMarks:
        """A kept connection that is still good, or a new one."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        while self._kept:
            kept = self._kept.pop()  # the most recently used: the likeliest to be good
            fresh = kept.loop is loop and now - kept.since < self.idle_seconds
            if fresh and kept.marks.reusable():
                return kept.marks
            await _close_quietly(kept.marks)
        return await SentMarks.connect(self.sqlalchemy_url)

    async def give_back(self, marks: SentMarks) -> None:
        """Keep ``marks`` for the next batch, or close it (not reusable, or enough kept)."""
        if len(self._kept) >= self.keep or not marks.reusable():
            await _close_quietly(marks)
            return
        marks.park()
        loop = asyncio.get_running_loop()
        self._kept.append(_Kept(marks, loop, time.monotonic()))
        if self._expiry is None:
            self._expiry = loop.call_later(self.idle_seconds, self._expire)

    async def close(self) -> None:
        """Close every kept connection."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        kept, self._kept = self._kept, []
        for each in kept:
            await _close_quietly(each.marks)

    def _expire(self) -> None:
        """Close what was kept longer than the idle time; look again when the next ends."""
        self._expiry = None
        now = time.monotonic()
        expired = [k for k in self._kept if now - k.since >= self.idle_seconds]
        self._kept = [k for k in self._kept if now - k.since < self.idle_seconds]
        loop = asyncio.get_running_loop()
        for each in expired:
            task = loop.create_task(_close_quietly(each.marks))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        if self._kept:
            oldest = min(k.since for k in self._kept)
            self._expiry = loop.call_later(oldest + self.idle_seconds - now, self._expire)


async def _close_quietly(marks: SentMarks) -> None:
    """Close a connection nobody uses any more; one that is already broken may fail to."""
    with contextlib.suppress(psycopg.Error, OSError, RuntimeError):
        await marks.close()

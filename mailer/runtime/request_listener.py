"""The CRM's writes carried out in about a second instead of at the dispatcher's next turn.

Migration 0006's trigger records each CRM write to the campaign and queue tables in
``mailer_request`` and sends ``NOTIFY mailer_request``. Each worker LISTENs on that channel
on a connection of its own and, when it hears one, signals the task queue's dispatcher
(:class:`workflows.maintenance.DispatcherWorkflow`) to take its turn now. A burst of writes
(a CRM queueing a hundred campaigns in a loop) is one wake, once the writes pause.

The wake waits until no write has come for ``QUIET_SECONDS`` (at most ``SETTLE_MAX_SECONDS``
after the first): a CRM that writes a campaign's status and its queue row in two commits —
Django's ORM commits each ``save()`` on its own outside ``transaction.atomic()``, milliseconds
apart — is read once both are in, not between them (a campaign set to ``sending`` started
without the deferral its queue row brings a moment later).

Nothing depends on it: a notification sent while no worker listens (a restart, the
database away) is only a lost shortcut — the request row stays, and the dispatcher's own
``DISPATCH_EVERY`` turn carries it out. A lost connection is one WARNING line, then quiet
reconnects with a growing delay, and one INFO line when listening again (with a wake, for
whatever was written meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.sent_marks import CONNECT_TIMEOUT_SECONDS, libpq_conninfo
from db.engine import LISTENER_APPLICATION_NAME
from mailer.core.settings import Settings
from mailer.doctor.probes import database_address
from mailer.mail.smtp_replies import redact_addresses
from workflows.maintenance import DispatcherWorkflow, dispatcher_workflow_id

log = logging.getLogger("mailer.runtime.request_listener")

CHANNEL = "mailer_request"  # migration 0006's pg_notify channel
CONNECTIONS = 1  # a worker's database connections for listening, beside its activities
QUIET_SECONDS = 0.25  # a pause in the CRM's writes this long ends what belongs together
SETTLE_MAX_SECONDS = 2.0  # writes that never pause still wake the dispatcher this often
RECONNECT_FIRST_SECONDS = 1.0
RECONNECT_MAX_SECONDS = 30.0


class RequestListener:
    """``await listener.run()`` until cancelled: LISTEN, and wake the dispatcher."""

    def __init__(
        self, client: Client, settings: Settings, *, quiet_seconds: float = QUIET_SECONDS
    ) -> None:
        self.client = client
        self.quiet_seconds = quiet_seconds
        self.task_queue = settings.task_queue
        self.sqlalchemy_url = settings.sqlalchemy_url
        self.address = database_address(settings)
        self.heard = 0  # notifications heard
        self.wakes = 0  # wakes the dispatcher accepted
        self._wanted = asyncio.Event()
        self._waiting = False  # the waker waits for a notification (none owed, none sent)

    @property
    def settled(self) -> bool:
        """Every notification heard so far has had its wake (or its part in one)."""
        return self._waiting and not self._wanted.is_set()

    async def run(self) -> None:
        waker = asyncio.create_task(self._wake_when_wanted())
        try:
            await self._listen_forever()
        finally:
            waker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waker

    async def _listen_forever(self) -> None:
        delay, lost = RECONNECT_FIRST_SECONDS, False
        while True:
            try:
                async with await self._connect() as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if lost:
                        log.info("listening for the CRM's requests at %s again", self.address)
                    lost, delay = False, RECONNECT_FIRST_SECONDS
                    self._wanted.set()  # whatever was written while nobody listened
                    async for _ in conn.notifies():
                        self.heard += 1
                        self._wanted.set()
            except Exception as error:  # the database's, or ours: say it, and listen again
                if not lost:
                    lines = str(error).strip().splitlines()
                    reason = redact_addresses(lines[0]) if lines else ""
                    log.warning(
                        "not listening for the CRM's requests at %s: %s (the dispatcher "
                        "still looks every few seconds; reconnecting quietly)",
                        self.address,
                        reason or type(error).__name__,
                        exc_info=not isinstance(error, psycopg.Error),
                    )
                lost = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        return await psycopg.AsyncConnection.connect(
            libpq_conninfo(self.sqlalchemy_url),
            autocommit=True,  # LISTEN takes effect at once, and notifications arrive between
            application_name=LISTENER_APPLICATION_NAME,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            # TCP keepalives, so a connection the network dropped silently is noticed within
            # a minute (a LISTEN connection only reads, and would otherwise wait forever).
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
        )

    async def _wake_when_wanted(self) -> None:
        handle = self.client.get_workflow_handle(dispatcher_workflow_id(self.task_queue))
        while True:
            self._waiting = True
            await self._wanted.wait()
            self._waiting = False
            await self._settle()
            try:
                await handle.signal(DispatcherWorkflow.wake)
                self.wakes += 1
            except RPCError as error:
                # No dispatcher (another worker starts it), or Temporal away (the worker
                # says so itself): the dispatcher's own turn is the fallback either way.
                level = logging.DEBUG if error.status == RPCStatusCode.NOT_FOUND else logging.INFO
                log.log(level, "could not wake the dispatcher: %s", error.message)
            except Exception:  # never let the waker die: the next notification tries again
                log.warning("could not wake the dispatcher", exc_info=True)

    async def _settle(self) -> None:
        """Return once the CRM's writes have paused for ``quiet_seconds``, or
        ``SETTLE_MAX_SECONDS`` after the first; every notification until then is part of
        this wake."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_MAX_SECONDS
        while True:
            self._wanted.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(
                    self._wanted.wait(), timeout=min(self.quiet_seconds, remaining)
                )
            except TimeoutError:
                return

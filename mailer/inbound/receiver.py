"""The SMTP receiver (aiosmtpd) that ``mailer web`` runs on ``MAILER_INBOUND_PORT``.

A message is acted on before it is accepted: ``250`` means it is on the suppression list (or
was read and deliberately ignored), so a database outage answers ``451`` and the sending
server keeps the message and tries again later — nothing is lost. It never relays: whatever
the recipient, a message is only read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.exc import SQLAlchemyError

from db.engine import session_scope
from mailer.core.errors import ConfigError
from mailer.core.settings import Settings
from mailer.inbound.handling import Handled, handle
from mailer.inbound.reports import read

log = logging.getLogger(__name__)

# Reports carry the returned message; a campaign message is far below this.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
TRY_AGAIN = "451 4.3.0 cannot record it now, try again later"


class InboundHandler:
    """aiosmtpd's handler: one message in, one suppression decision, one reply."""

    def __init__(self, settings: Settings) -> None:
        self.database_url = settings.sqlalchemy_url
        self.secret = settings.unsubscribe_key

    def process(self, raw: bytes) -> Handled:
        message = read(raw)
        with session_scope(self.database_url) as session:
            return handle(session, self.secret, message)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (aiosmtpd calls handle_<VERB>)
        raw = envelope.original_content or b""
        try:
            handled = await asyncio.to_thread(self.process, raw)
        except SQLAlchemyError as exc:
            log.warning("inbound message deferred, the database failed: %s", type(exc).__name__)
            return TRY_AGAIN
        except Exception as exc:
            # A bug must not lose a report: the sender keeps it and retries after a fix.
            # Only the type: the error's text may quote the message (addresses).
            log.error("inbound message deferred, reading it failed: %s", type(exc).__name__)
            return TRY_AGAIN
        log.info("inbound message: %s", handled.summary)
        return f"250 2.0.0 {handled.action}"


def bind(settings: Settings) -> socket.socket | None:
    """The receiver's listening socket (``None`` when ``MAILER_INBOUND_PORT`` is 0), bound
    before the web server starts so that a taken port is one line, not a traceback."""
    if not settings.inbound_port:
        return None
    address = (settings.web_host, settings.inbound_port)
    try:
        return socket.create_server(address)
    except OSError as exc:
        raise ConfigError(
            f"MAILER_INBOUND_PORT: cannot receive mail on {address[0]}:{address[1]}: "
            f"{os.strerror(exc.errno) if exc.errno else exc}"
        ) from None


@asynccontextmanager
async def receiving(
    settings: Settings, listening: socket.socket | None = None
) -> AsyncIterator[asyncio.Server | None]:
    """Serve SMTP on ``listening`` (else on a socket bound to ``MAILER_INBOUND_PORT``) for the
    duration; yields ``None`` when the port is 0 (off)."""
    listening = listening or bind(settings)
    if listening is None:
        yield None
        return
    # aiosmtpd logs every command at INFO, addresses and all: shown at DEBUG only.
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("mail.log").setLevel(logging.WARNING)
    handler = InboundHandler(settings)
    hostname = socket.gethostname()  # not getfqdn(): that may wait on DNS
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            data_size_limit=MAX_MESSAGE_BYTES,
            enable_SMTPUTF8=True,
            hostname=hostname,
            ident="mailer inbound",
        ),
        sock=listening,
    )
    log.info("receiving mail on %s:%s", *listening.getsockname()[:2])
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()

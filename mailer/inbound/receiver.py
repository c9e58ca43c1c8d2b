"""The SMTP receiver (aiosmtpd) that ``mailer web`` runs on ``MAILER_INBOUND_PORT``.

A message is acted on before it is accepted: ``250`` means it is on the suppression list (or
was read and deliberately ignored), so a database outage answers ``451`` and the sending
server keeps the message and tries again later — nothing is lost. It never relays: whatever
the recipient, a message is only read.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.exc import SQLAlchemyError

from db.engine import session_scope
from mailer.inbound.handling import Handled, handle
from mailer.inbound.reports import read
from mailer.settings import Settings

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

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        try:
            handled = await asyncio.to_thread(self.process, raw)
        except SQLAlchemyError as exc:
            log.warning("inbound message deferred, the database failed: %s", type(exc).__name__)
            return TRY_AGAIN
        log.info("inbound message: %s", handled.summary)
        return f"250 2.0.0 {handled.action}"


@asynccontextmanager
async def receiving(settings: Settings) -> AsyncIterator[asyncio.Server | None]:
    """Serve SMTP on ``MAILER_INBOUND_PORT`` (on ``MAILER_WEB_HOST``) for the duration;
    yields ``None`` when the port is 0 (off)."""
    if not settings.inbound_port:
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
        host=settings.web_host,
        port=settings.inbound_port,
    )
    log.info("receiving mail on %s:%s", settings.web_host, settings.inbound_port)
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()

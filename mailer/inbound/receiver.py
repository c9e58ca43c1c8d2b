"""The SMTP receiver (aiosmtpd) that ``mailer web`` runs on ``MAILER_INBOUND_PORT``.

A message is acted on before it is accepted: ``250`` means it is on the suppression list (or
was read and deliberately ignored), so a database outage answers ``451`` and the sending
server keeps the message and tries again later — nothing is lost. It never relays: whatever
the recipient, a message is only read. With ``MAILER_INBOUND_TLS_CERT`` and ``_KEY`` it offers
STARTTLS, so reports carrying tokens need not cross the internet in clear.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.exc import SQLAlchemyError

from db.engine import session_scope
from mailer.core.errors import ConfigError
from mailer.core.settings import Settings
from mailer.inbound.feedback_loops import CheckBy, Verdict, judge, parse_domains
from mailer.inbound.handling import Handled, handle
from mailer.inbound.reports import InboundMessage, read
from mailer.inbound.signatures import KeyLookupFailed, SignatureChecker, parse_nameservers

log = logging.getLogger(__name__)

TRY_AGAIN = "451 4.3.0 cannot record it now, try again later"

# A report is addressed to one of our mailboxes; anything more is not a report.
MAX_RECIPIENTS = 100
# A delivery report has three or four MIME parts, a complaint about the same; a message of
# thousands (or nested a thousand deep) costs seconds of parsing and is nothing we read.
MAX_MIME_PARTS = 200
# Messages parsed at once (each in a thread, off the event loop that serves HTTP).
MAX_PARSING = 4
CANNOT_READ = "554 5.6.0 cannot read this message: {why}"


# A report quotes one message's headers: one or two List-Unsubscribe. Tens of thousands
# (7 MB of them took 28 s of CPU to parse) are an attack, refused before parsing.
MAX_LIST_UNSUBSCRIBE = 50


def too_complex(raw: bytes) -> str | None:
    """Why ``raw`` is refused before it is parsed (linear: a pass over the bytes)."""
    lowered = raw.lower()
    parts = lowered.count(b"content-type:")
    if parts > MAX_MIME_PARTS:
        return f"{parts} MIME parts, at most {MAX_MIME_PARTS}"
    links = lowered.count(b"\nlist-unsubscribe:")
    if links > MAX_LIST_UNSUBSCRIBE:
        return f"{links} List-Unsubscribe headers, at most {MAX_LIST_UNSUBSCRIBE}"
    return None


def served_domains(settings: Settings) -> frozenset[str]:
    """The domains of the mailboxes the receiver is for: the return path, the unsubscribe
    mailbox and MAILER_INBOUND_DOMAINS. Empty: any (a test rig with none configured)."""
    domains = {d.strip().lower() for d in settings.inbound_domains.split(",") if d.strip()}
    for mailbox in (settings.return_path, settings.unsubscribe_mailto):
        if "@" in mailbox:
            domains.add(mailbox.rpartition("@")[2].lower())
    return frozenset(domains)


def rcpt_refusal(address: str, taken: int, domains: frozenset[str]) -> str | None:
    """The reply refusing RCPT TO ``address`` (``taken`` recipients already), if refused:
    the receiver never relays and looks like no open relay to a scanner."""
    if taken >= MAX_RECIPIENTS:
        return f"452 4.5.3 too many recipients (at most {MAX_RECIPIENTS})"
    local, at, domain = address.rpartition("@")
    if not at or not local or any(c in local for c in "%!@:") or ":" in domain:
        return "550 5.7.1 relaying denied"
    if domains and domain.lower().rstrip(".") not in domains:
        return "550 5.7.1 relaying denied: not a mailbox served here"
    return None


class InboundHandler:
    """aiosmtpd's handler: one message in, one suppression decision, one reply."""

    def __init__(self, settings: Settings) -> None:
        self.database_url = settings.sqlalchemy_url
        self.secret = settings.unsubscribe_key
        self.domains = served_domains(settings)
        self.parsing = asyncio.Semaphore(MAX_PARSING)
        self.loops = parse_domains(settings.feedback_loops)
        self.check = CheckBy(settings.feedback_loop_check)
        self.signatures = SignatureChecker(parse_nameservers(settings.dkim_nameservers))

    async def handle_RCPT(  # noqa: N802 (aiosmtpd calls handle_<VERB>)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = rcpt_refusal(address, len(envelope.rcpt_tos), self.domains)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    def vouch(self, raw: bytes, message: InboundMessage) -> Verdict:
        """Whether a configured feedback loop vouches for the complaint ``raw`` (DNS)."""
        signed_by: tuple[str, ...] = ()
        if self.loops and self.check == CheckBy.DKIM:
            signed_by = self.signatures.signed_by(raw, self.loops)
        return judge(self.loops, self.check, message.sender_domain, signed_by)

    def process(self, raw: bytes) -> Handled | str:
        try:
            message = read(raw)
        except (RecursionError, ValueError, LookupError, UnicodeError, IndexError) as exc:
            # The same bytes fail the same way every time: refused for good, not retried.
            return CANNOT_READ.format(why=type(exc).__name__)
        try:
            with session_scope(self.database_url) as session:
                return handle(session, self.secret, message, lambda: self.vouch(raw, message))
        except KeyLookupFailed as exc:
            log.warning("inbound message deferred: %s", exc)
            return TRY_AGAIN

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (aiosmtpd calls handle_<VERB>)
        raw = envelope.original_content or b""
        why = too_complex(raw)
        if why is not None:
            log.warning("inbound message refused: %s", why)
            return CANNOT_READ.format(why=why)
        try:
            async with self.parsing:
                handled = await asyncio.to_thread(self.process, raw)
        except SQLAlchemyError as exc:
            log.warning("inbound message deferred, the database failed: %s", type(exc).__name__)
            return TRY_AGAIN
        except Exception as exc:
            # A bug must not lose a report: the sender keeps it and retries after a fix.
            # Only the type: the error's text may quote the message (addresses).
            log.error("inbound message deferred, reading it failed: %s", type(exc).__name__)
            return TRY_AGAIN
        if isinstance(handled, str):
            log.warning("inbound message refused: %s", handled)
            return handled
        log.info("inbound message: %s", handled.summary)
        return f"250 2.0.0 {handled.action}"


def bind(settings: Settings) -> socket.socket | None:
    """The receiver's listening socket (``None`` when ``MAILER_INBOUND_PORT`` is 0), bound
    before the web server starts so that a taken port (or an unusable certificate) is one
    line, not a traceback."""
    if not settings.inbound_port:
        return None
    tls_context(settings)
    address = (settings.web_host, settings.inbound_port)
    try:
        return socket.create_server(address)
    except OSError as exc:
        raise ConfigError(
            f"MAILER_INBOUND_PORT: cannot receive mail on {address[0]}:{address[1]}: "
            f"{os.strerror(exc.errno) if exc.errno else exc}"
        ) from None


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The STARTTLS context from ``MAILER_INBOUND_TLS_CERT``/``_KEY``, ``None`` when unset."""
    if settings.inbound_tls_cert is None or settings.inbound_tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.inbound_tls_cert, settings.inbound_tls_key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"MAILER_INBOUND_TLS_CERT: cannot use {settings.inbound_tls_cert} with "
            f"{settings.inbound_tls_key}: {getattr(exc, 'reason', None) or exc}"
        ) from None
    return context


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
    tls = tls_context(settings)
    hostname = socket.gethostname()  # not getfqdn(): that may wait on DNS
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            data_size_limit=settings.inbound_max_message_kb * 1024,
            enable_SMTPUTF8=True,
            hostname=hostname,
            ident="mailer inbound",
            tls_context=tls,
            require_starttls=False,  # a sender without TLS still delivers its report
        ),
        sock=listening,
    )
    log.info("receiving mail on %s:%s", *listening.getsockname()[:2])
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()

"""ESMTP PIPELINING (RFC 2920) on aiosmtplib's connection.

aiosmtplib reads one reply per command it awaits and drops bytes that arrive while no
command waits, so replies to commands written together would be lost. On a server that
advertises PIPELINING, :func:`adopt_pipelining` swaps in :class:`PipeliningProtocol`, which
keeps every reply in arrival order; :func:`pipelined_envelope` then writes MAIL FROM, RCPT TO
and DATA in one flight and reads their three replies together — two round trips a message
(the envelope, then the body) instead of four. Everything else (STARTTLS, AUTH, RSET, QUIT)
still goes through aiosmtplib, one command at a time, on the same connection.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import re

import aiosmtplib
from aiosmtplib import (
    SMTPDataError,
    SMTPReadTimeoutError,
    SMTPRecipientRefused,
    SMTPResponse,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    SMTPStatus,
)
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import COMMAND_INJECTION_REGEX, MAX_RESPONSE_LENGTH, SMTPProtocol

# A pipelined group has three replies (four with RFC 2920's empty message); a server that
# sends far more than asked is refused rather than buffered without end.
MAX_UNREAD_REPLIES = 16
# RCPT's two accepting replies (251: "not local, will forward").
RECIPIENT_ACCEPTED = (SMTPStatus.completed, SMTPStatus.will_forward)
# local@domain with nothing ``email.utils.parseaddr`` would read as a display name, comment,
# route, group or quoted string, and no control character: ``quote_address`` returns such an
# address as it is, in angle brackets.
_PLAIN_MAILBOX = re.compile(
    r'[^\s\x00-\x1f\x7f<>"(),;:\\\[\]@]+@[^\s\x00-\x1f\x7f<>"(),;:\\\[\]@]+'
)


class PipeliningProtocol(SMTPProtocol):
    """aiosmtplib's protocol, but every reply that arrives is kept, in order, until read:
    several commands may be written before their replies are read."""

    def __init__(self, smtp_protocol: SMTPProtocol, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(
            loop=loop, connection_lost_callback=smtp_protocol._connection_lost_callback
        )
        self._replies: collections.deque[SMTPResponse] = collections.deque()
        self._failure: BaseException | None = None
        self._arrived = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        if self._failure is not None:  # the session is done for: nothing more is read
            return
        self._buffer.extend(data)
        if len(self._buffer) > MAX_RESPONSE_LENGTH:
            del self._buffer[:]
            self._fail(SMTPResponseException(SMTPStatus.invalid_response, "Response too long"))
            return
        try:
            while (reply := self._read_response_from_buffer()) is not None:
                self._replies.append(reply)
                if len(self._replies) > MAX_UNREAD_REPLIES:
                    self._replies.clear()
                    self._fail(
                        SMTPResponseException(SMTPStatus.invalid_response, "Too many replies")
                    )
                    break
        except SMTPResponseException as exc:  # a malformed or overlong line
            self._fail(exc)
        self._arrived.set()

    def eof_received(self) -> bool:
        self._fail(SMTPServerDisconnected("Unexpected EOF received"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._fail(SMTPServerDisconnected("Connection lost"))

    def _fail(self, failure: BaseException) -> None:
        self._failure = self._failure or failure
        self._arrived.set()

    async def read_response(self, timeout: float | None = None) -> SMTPResponse:
        """The next reply not read yet (in the order the commands were written)."""
        if self._replies:  # a pipelined group's replies mostly arrive together: no wait
            return self._replies.popleft()
        try:
            async with asyncio.timeout(timeout):
                while not self._replies:
                    if self._failure is not None:
                        raise self._failure
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise SMTPReadTimeoutError("Timed out waiting for server response") from None
        return self._replies.popleft()


async def adopt_pipelining(smtp: aiosmtplib.SMTP) -> bool:
    """On a server that advertises PIPELINING, read the session's replies with
    :class:`PipeliningProtocol` from now on; whether it does."""
    if smtp.is_ehlo_or_helo_needed:
        await smtp.ehlo()
    current = smtp.protocol
    if current is None or current.transport is None or smtp.loop is None:
        return False
    if not smtp.supports_extension("pipelining"):
        return False
    if isinstance(current, PipeliningProtocol):
        return True
    adopted = PipeliningProtocol(current, smtp.loop)
    transport = current.transport
    adopted.connection_made(transport)
    transport.set_protocol(adopted)
    smtp.protocol = adopted
    return True


def pipelines(smtp: aiosmtplib.SMTP) -> bool:
    """Whether the session was adopted for pipelining."""
    return isinstance(smtp.protocol, PipeliningProtocol)


def quoted_path(address: str, encoding: str) -> bytes:
    """``<address>`` for MAIL FROM or RCPT TO, as aiosmtplib's ``quote_address`` writes it.

    A plain ``local@domain`` (every address the ledger holds: they are checked on import)
    skips ``parseaddr``, a third of the envelope's CPU; anything else goes through
    ``quote_address``, which also refuses what could smuggle a command onto the line."""
    if _PLAIN_MAILBOX.fullmatch(address):
        return b"<" + address.encode(encoding) + b">"
    return quote_address(address).encode(encoding)


@functools.lru_cache(maxsize=64)
def quoted_sender(address: str, encoding: str) -> bytes:
    """MAIL FROM's path, once per sender (every message of a batch has the same one)."""
    return quoted_path(address, encoding)


def _command(*args: bytes) -> bytes:
    for arg in args:
        if COMMAND_INJECTION_REGEX.search(arg):
            raise ValueError("Command arg contains a prohibited control character")
    return b" ".join(args) + b"\r\n"


async def pipelined_envelope(
    smtp: aiosmtplib.SMTP, sender: str, recipient: str, options: list[str], encoding: str
) -> None:
    """MAIL FROM, RCPT TO and DATA in one write, their replies read together; returns once
    the server said 354 to DATA. Raises as one command at a time would — the first refusal
    of the three (``SMTPSenderRefused``, ``SMTPRecipientRefused``, ``SMTPDataError``) — with
    every reply of the group read, so the session stays in step for the RSET that follows."""
    protocol = smtp.protocol
    if not isinstance(protocol, PipeliningProtocol):
        raise SMTPServerDisconnected("Connection lost")
    group = (
        _command(
            b"MAIL",
            b"FROM:" + quoted_sender(sender, encoding),
            *(option.encode("ascii") for option in options),
        )
        + _command(b"RCPT", b"TO:" + quoted_path(recipient, encoding))
        + b"DATA\r\n"
    )
    protocol.write(group)
    mail = await protocol.read_response(timeout=smtp.timeout)
    rcpt = await protocol.read_response(timeout=smtp.timeout)
    data = await protocol.read_response(timeout=smtp.timeout)
    envelope_taken = mail.code == SMTPStatus.completed and rcpt.code in RECIPIENT_ACCEPTED
    if data.code == SMTPStatus.start_input and not envelope_taken:
        # RFC 2920 3.1: a server that took DATA without a valid envelope gets an empty
        # message, which it cannot deliver to anyone; its reply is read and set aside.
        protocol.write(b".\r\n")
        await protocol.read_response(timeout=smtp.timeout)
    if mail.code != SMTPStatus.completed:
        raise SMTPSenderRefused(mail.code, mail.message, sender)
    if rcpt.code not in RECIPIENT_ACCEPTED:
        raise SMTPRecipientRefused(rcpt.code, rcpt.message, recipient)
    if data.code != SMTPStatus.start_input:
        raise SMTPDataError(data.code, data.message)

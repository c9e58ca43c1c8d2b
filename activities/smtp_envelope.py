"""The envelope on the wire: MAIL FROM, RCPT TO and DATA, pipelined (RFC 2920) where the
server advertises PIPELINING, one at a time where it does not.

aiosmtplib reads one reply per command it awaits and drops bytes that arrive while no
command waits, so replies to commands written together would be lost. Once a session is
open, :func:`adopt_reply_queue` swaps in :class:`ReplyQueueProtocol`, which keeps every
reply in arrival order. :func:`write_envelope` then writes the three commands in one flight
and reads their replies together where the server pipelines — two round trips a message (the
envelope, then the body) instead of four — and otherwise writes each after the last one's
reply. Either way it writes and reads on the protocol directly: aiosmtplib's
``execute_command`` (a lock, a wrapper and a ``wait_for`` per command) cost about 0.01 ms a
message, 8 % of the transaction's CPU (``bench/smtp_send.py``); what it did besides (hang up
on a timeout or a 421, refuse a command with a line break) is done here. Everything else
(STARTTLS, AUTH, RSET, QUIT) still goes through aiosmtplib, one command at a time, on the
same connection.
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


class ReplyQueueProtocol(SMTPProtocol):
    """aiosmtplib's protocol, but every reply that arrives is kept, in order, until read:
    several commands may be written before their replies are read.

    A read that times out, like one that finds the connection gone, ends the session: a reply
    given up on could otherwise be read later as the answer to another command."""

    def __init__(
        self, smtp_protocol: SMTPProtocol, loop: asyncio.AbstractEventLoop, *, pipelining: bool
    ) -> None:
        super().__init__(
            loop=loop, connection_lost_callback=smtp_protocol._connection_lost_callback
        )
        self.pipelining = pipelining
        self._replies: collections.deque[SMTPResponse] = collections.deque()
        self._failure: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        if self._failure is not None:  # the session is done for: nothing more is read
            return
        self._buffer.extend(data)
        if len(self._buffer) > MAX_RESPONSE_LENGTH:
            del self._buffer[:]
            self._abandon(SMTPResponseException(SMTPStatus.invalid_response, "Response too long"))
            return
        try:
            while (reply := self._read_response_from_buffer()) is not None:
                self._replies.append(reply)
                if len(self._replies) > MAX_UNREAD_REPLIES:
                    self._replies.clear()
                    self._abandon(
                        SMTPResponseException(SMTPStatus.invalid_response, "Too many replies")
                    )
                    return
        except SMTPResponseException as exc:  # a malformed or overlong line
            self._abandon(exc)
            return
        if self._replies:
            self._wake()

    def eof_received(self) -> bool:
        self._fail(SMTPServerDisconnected("Unexpected EOF received"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._fail(SMTPServerDisconnected("Connection lost"))

    def _fail(self, failure: BaseException) -> None:
        self._failure = self._failure or failure
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _abandon(self, failure: BaseException) -> None:
        """The session cannot stay in step with the server: fail it and hang up."""
        self._fail(failure)
        if self.transport is not None:
            self.transport.close()

    def _time_out(self) -> None:
        self._abandon(SMTPReadTimeoutError("Timed out waiting for server response"))

    async def read_response(self, timeout: float | None = None) -> SMTPResponse:
        """The next reply not read yet (in the order the commands were written)."""
        if not self._replies:
            await self._arrival(timeout)
        return self._replies.popleft()

    async def _arrival(self, timeout: float | None) -> None:
        """Wait until a reply is queued; raises the session's failure instead (a timeout is
        one). One future and one timer a wait: the cheapest wait asyncio offers."""
        loop = self._loop
        deadline = None if timeout is None else loop.time() + timeout
        while not self._replies:
            if self._failure is not None:
                raise self._failure
            waiter = self._waiter = loop.create_future()
            timer = None if deadline is None else loop.call_at(deadline, self._time_out)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()


async def adopt_reply_queue(smtp: aiosmtplib.SMTP) -> bool:
    """Read the session's replies with :class:`ReplyQueueProtocol` from now on; whether the
    server pipelines (it advertised PIPELINING)."""
    if smtp.is_ehlo_or_helo_needed:
        await smtp.ehlo()
    current = smtp.protocol
    if current is None or current.transport is None or smtp.loop is None:
        return False
    pipelining = smtp.supports_extension("pipelining")
    if isinstance(current, ReplyQueueProtocol):
        current.pipelining = pipelining
        return pipelining
    adopted = ReplyQueueProtocol(current, smtp.loop, pipelining=pipelining)
    transport = current.transport
    adopted.connection_made(transport)
    transport.set_protocol(adopted)
    smtp.protocol = adopted
    return pipelining


def pipelines(smtp: aiosmtplib.SMTP) -> bool:
    """Whether the session writes its envelopes pipelined."""
    protocol = smtp.protocol
    return isinstance(protocol, ReplyQueueProtocol) and protocol.pipelining


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


async def write_envelope(
    smtp: aiosmtplib.SMTP, sender: str, recipient: str, options: list[str], encoding: str
) -> None:
    """MAIL FROM, RCPT TO and DATA; returns once the server said 354 to DATA.

    Raises as aiosmtplib's ``mail``, ``rcpt`` and DATA would, with the same command lines —
    the first refusal (``SMTPSenderRefused``, ``SMTPRecipientRefused``, ``SMTPDataError``) —
    and with every reply of a pipelined group read, so the session stays in step for the RSET
    that follows. A plain address is not parsed again for each message
    (:func:`quoted_path`)."""
    protocol = smtp.protocol
    if not isinstance(protocol, ReplyQueueProtocol):
        raise SMTPServerDisconnected("Connection lost")
    mail = _command(
        b"MAIL",
        b"FROM:" + quoted_sender(sender, encoding),
        *(option.encode("ascii") for option in options),
    )
    rcpt = _command(b"RCPT", b"TO:" + quoted_path(recipient, encoding))
    try:
        if protocol.pipelining:
            group = mail + rcpt + b"DATA\r\n"
            await _pipelined(protocol, group, sender, recipient, smtp.timeout)
        else:
            await _stepwise(protocol, mail, rcpt, sender, recipient, smtp.timeout)
    except SMTPResponseException as exc:
        if exc.code == SMTPStatus.domain_unavailable:
            # 421: the server is closing the channel (RFC 5321 3.8); hang up as aiosmtplib
            # does, rather than write the next message into it.
            smtp.close()
        raise


async def _stepwise(
    protocol: ReplyQueueProtocol,
    mail: bytes,
    rcpt: bytes,
    sender: str,
    recipient: str,
    timeout: float | None,
) -> None:
    """Each command after the previous one's reply (a server without PIPELINING)."""
    protocol.write(mail)
    reply = await protocol.read_response(timeout)
    if reply.code != SMTPStatus.completed:
        raise SMTPSenderRefused(reply.code, reply.message, sender)
    protocol.write(rcpt)
    reply = await protocol.read_response(timeout)
    if reply.code not in RECIPIENT_ACCEPTED:
        raise SMTPRecipientRefused(reply.code, reply.message, recipient)
    protocol.write(b"DATA\r\n")
    reply = await protocol.read_response(timeout)
    if reply.code != SMTPStatus.start_input:
        raise SMTPDataError(reply.code, reply.message)


async def _pipelined(
    protocol: ReplyQueueProtocol, group: bytes, sender: str, recipient: str, timeout: float | None
) -> None:
    """The three commands in one write, their three replies read together."""
    protocol.write(group)
    mail = await protocol.read_response(timeout)
    rcpt = await protocol.read_response(timeout)
    data = await protocol.read_response(timeout)
    envelope_taken = mail.code == SMTPStatus.completed and rcpt.code in RECIPIENT_ACCEPTED
    if data.code == SMTPStatus.start_input and not envelope_taken:
        # RFC 2920 3.1: a server that took DATA without a valid envelope gets an empty
        # message, which it cannot deliver to anyone; its reply is read and set aside.
        protocol.write(b".\r\n")
        await protocol.read_response(timeout)
    if mail.code != SMTPStatus.completed:
        raise SMTPSenderRefused(mail.code, mail.message, sender)
    if rcpt.code not in RECIPIENT_ACCEPTED:
        raise SMTPRecipientRefused(rcpt.code, rcpt.message, recipient)
    if data.code != SMTPStatus.start_input:
        raise SMTPDataError(data.code, data.message)

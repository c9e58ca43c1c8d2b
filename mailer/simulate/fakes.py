"""The simulation's stand-ins for the outside world, driven by the simulated clock.

An SMTP responder on the running event loop (lean, so days of sending simulate in seconds)
that applies ``--fail`` rules, and an smtp.bz API whose quota follows ``--quota-refill``.
Both are real servers on loopback: the production activities talk to them over TCP/HTTP.
The responder advertises PIPELINING, as Postfix and the large providers do, so the
simulated worker sends as it would to them (MAIL, RCPT and DATA in one flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from mailer.simulate.options import FailRule, Refill
from mailer.stack.smtpbz_stub import SmtpBzStubServer, StubAccount

Clock = Callable[[], Awaitable[datetime]]
# The longest run of a message without a line ending in "." the responder buffers (a whole
# message, at most: base64 lines never end in one); campaign templates are far smaller.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_REPLIES = {
    4: "4.3.2 Simulated: the system is not accepting messages now",
    5: "5.1.1 Simulated permanent failure",
}


def _matches(rule: FailRule, address: str) -> bool:
    return rule.pattern in {"*", "all"} or fnmatch.fnmatch(address.lower(), rule.pattern.lower())


class MessageTooLong(Exception):
    """A message ran past the responder's buffer without a line ending it."""


class LineTooLong(Exception):
    """A command line ran past the responder's buffer."""


class SimulatedSmtp:
    """Accepts every message except those the ``--fail`` rules refuse (at RCPT)."""

    def __init__(
        self,
        rules: Sequence[FailRule],
        clock: Clock,
        *,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.rules = list(rules)
        self.clock = clock
        self.max_message_bytes = max_message_bytes
        self.accepted = 0
        self.refused = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", 0, limit=self.max_message_bytes
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def refusal(self, address: str) -> str | None:
        """The reply refusing ``address`` now, if a rule does."""
        windowed = any(rule.start is not None for rule in self.rules)
        now = await self.clock() if windowed else None
        for rule in self.rules:
            if _matches(rule, address) and (now is None or rule.active(now)):
                return f"{rule.code} {rule.text or _REPLIES[rule.code // 100]}"
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(self, writer)
        session.reply("220 simulator ESMTP")
        try:
            await session.flush()
            while line := await read_command(reader):
                verb = line[:4].upper()
                if verb == b"DATA" and session.recipients:
                    session.recipients = 0
                    session.reply("354 End data with <CR><LF>.<CR><LF>")
                    await session.flush()
                    if not await skip_message(reader):
                        break
                    self.accepted += 1
                    session.reply("250 2.0.0 OK")
                elif verb == b"QUIT":
                    session.reply("221 2.0.0 Bye")
                    await session.flush()
                    break
                else:
                    await session.answer(verb, line)
                if not _more_to_read(reader):
                    await session.flush()
        except MessageTooLong:  # a real server's words for it, then the session ends
            session.reply("552 5.3.4 Message size exceeds fixed limit")
            await _flush_quietly(session)
        except LineTooLong:
            session.reply("500 5.5.2 Line too long")
            await _flush_quietly(session)
        except ConnectionError:
            pass
        finally:
            writer.close()


class _Session:
    """One client's SMTP session: the envelope so far and the replies not yet written."""

    def __init__(self, server: SimulatedSmtp, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.writer = writer
        self.recipients = 0  # accepted in the current envelope
        self._replies: list[bytes] = []

    def reply(self, text: str) -> None:
        self._replies.append(text.encode() + b"\r\n")

    async def flush(self) -> None:
        """Write the replies so far: a pipelined group's go out together once its last
        command is read, as a real server's do (one write, not one per reply)."""
        if self._replies:
            self.writer.write(b"".join(self._replies))
            self._replies.clear()
            await self.writer.drain()

    async def answer(self, verb: bytes, line: bytes) -> None:
        """Every command but DATA with recipients (the body follows) and QUIT."""
        if verb in (b"EHLO", b"HELO"):
            self.reply("250-simulator\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8")
        elif verb == b"RCPT":
            address = line.decode(errors="replace").partition(":")[2]
            address = address.strip().split()[0].strip("<>") if address.strip() else ""
            refusal = await self.server.refusal(address)
            if refusal is None:
                self.recipients += 1
                self.reply("250 2.1.5 OK")
            else:
                self.server.refused += 1
                self.reply(refusal)
        elif verb == b"DATA":  # no recipient was accepted
            self.reply("554 5.5.1 Error: no valid recipients")  # Postfix's words
        else:  # MAIL, RSET, NOOP
            if verb in (b"MAIL", b"RSET"):
                self.recipients = 0
            self.reply("250 2.0.0 OK")


async def skip_message(reader: asyncio.StreamReader) -> bool:
    """Read past the message to its lone-dot line (it is not kept), a chunk of lines at a
    time rather than line by line; ``False`` if the client hung up first.

    Raises :class:`MessageTooLong` when a run of the message without a line ending in "."
    outgrows the reader's buffer (its ``limit``).
    """
    try:
        while True:
            # Each chunk ends a line, so the next one starts a line.
            chunk = await reader.readuntil(b".\r\n")
            if chunk == b".\r\n" or chunk.endswith(b"\n.\r\n"):
                return True
    except asyncio.IncompleteReadError:
        return False
    except asyncio.LimitOverrunError:
        raise MessageTooLong from None


async def read_command(reader: asyncio.StreamReader) -> bytes:
    """The client's next line (``b""`` once it hung up); :class:`LineTooLong` when it
    outgrows the reader's buffer."""
    try:
        return await reader.readline()
    except ValueError:  # StreamReader.readline's way of saying the limit was overrun
        raise LineTooLong from None


async def _flush_quietly(session: _Session) -> None:
    """The last reply of a session being ended; a client already gone is no error."""
    with contextlib.suppress(ConnectionError):
        await session.flush()


def _more_to_read(reader: asyncio.StreamReader) -> bool:
    """Whether the client's next command has already arrived (it pipelined)."""
    return b"\n" in getattr(reader, "_buffer", b"")


class SimulatedProvider(SmtpBzStubServer):
    """The smtp.bz API as the simulation sees it.

    Before any refill the provider agrees with our own count (it reports the database's
    ``emails_available``); from a refill's time on it reports the refill's amount less what
    was sent since.
    """

    def __init__(
        self,
        refills: Sequence[Refill],
        *,
        now: Callable[[], datetime],
        database_available: Callable[[], int],
        sent_since: Callable[[datetime], int],
    ) -> None:
        super().__init__(account=StubAccount(api_key="simulation"))
        self.refills = sorted(refills, key=lambda refill: refill.at)
        self._now = now
        self._database_available = database_available
        self._sent_since = sent_since

    def current_account(self) -> StubAccount:
        now = self._now()
        due = [refill for refill in self.refills if refill.at <= now]
        if due:
            latest = due[-1]
            quota = max(0, latest.available - self._sent_since(latest.at))
        else:
            quota = self._database_available()
        return StubAccount(api_key="simulation", quota=quota, tarif_quota=quota)

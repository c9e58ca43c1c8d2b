"""The simulation's stand-ins for the outside world, driven by the simulated clock.

An SMTP responder on the running event loop (lean, so days of sending simulate in seconds)
that applies ``--fail`` rules, and an smtp.bz API whose quota follows ``--quota-refill``.
Both are real servers on loopback: the production activities talk to them over TCP/HTTP.
The responder advertises PIPELINING, as Postfix and the large providers do, so the
simulated worker sends as it would to them (MAIL, RCPT and DATA in one flight).
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import cast

from mailer.simulate.options import FailRule, Refill
from mailer.stack.smtpbz_stub import SmtpBzStubServer, StubAccount

Clock = Callable[[], Awaitable[datetime]]
# The longest message (or command line) the responder takes; campaign messages are far
# smaller.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_REPLIES = {
    4: "4.3.2 Simulated: the system is not accepting messages now",
    5: "5.1.1 Simulated permanent failure",
}


def _matches(rule: FailRule, address: str) -> bool:
    return rule.pattern in {"*", "all"} or fnmatch.fnmatch(address.lower(), rule.pattern.lower())


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
        # RCPTs waiting for the simulated clock (a rule with a window): kept until done.
        self._reading_clock: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Session(self), "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        for task in self._reading_clock:
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def answer_later(self, answer: Awaitable[None]) -> None:
        """Run a session's answer that waits for the simulated clock, kept until it is done
        (and cancelled if the responder stops first)."""
        task = asyncio.ensure_future(answer)
        self._reading_clock.add(task)
        task.add_done_callback(self._reading_clock.discard)

    @property
    def reads_clock(self) -> bool:
        """Whether a rule has a window, so a refusal depends on the simulated time."""
        return any(rule.start is not None for rule in self.rules)

    def refusal_at(self, address: str, now: datetime | None) -> str | None:
        """The reply refusing ``address`` at ``now`` (``None``: no rule has a window)."""
        for rule in self.rules:
            if _matches(rule, address) and (now is None or rule.active(now)):
                return f"{rule.code} {rule.text or _REPLIES[rule.code // 100]}"
        return None

    async def refusal(self, address: str) -> str | None:
        """The reply refusing ``address`` now, if a rule does."""
        return self.refusal_at(address, await self.clock() if self.reads_clock else None)


class _Session(asyncio.Protocol):
    """One client's SMTP session, answered as its bytes arrive (``data_received``): no task
    per session and no wake-up per command, which is what a message costs the forecast's
    event loop, shared with the worker that sends. Replies to commands that arrived together
    (a pipelined group) go out in one write once the last is read, as a real server's do.

    A command line, or a message, longer than the responder's ``max_message_bytes`` is
    answered (500, 552) and the session ends.
    """

    def __init__(self, server: SimulatedSmtp) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.recipients = 0  # accepted in the current envelope
        self.in_message = False  # between DATA's 354 and the lone dot
        self.scanned = 0  # how far the buffer was searched (for a line's or message's end)
        self.waiting = False  # an RCPT waits for the simulated clock: the rest waits too
        self.replies: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(b"220 simulator ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.buffer += data
        if not self.waiting:
            self.answer_arrived()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def reply(self, text: str) -> None:
        self.replies.append(text.encode() + b"\r\n")

    def flush(self) -> None:
        if self.replies and self.transport is not None:
            self.transport.write(b"".join(self.replies))
        self.replies.clear()

    def end(self, last_reply: str) -> None:
        """The session's last reply, then the connection closes."""
        self.reply(last_reply)
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def answer_arrived(self) -> None:
        """Answer every complete command (and message) received so far."""
        limit = self.server.max_message_bytes
        while self.transport is not None and not self.transport.is_closing():
            if self.in_message:
                end = message_end(self.buffer, self.scanned)
                if end is None:
                    if len(self.buffer) > limit:  # a real server's words for it
                        self.end("552 5.3.4 Message size exceeds fixed limit")
                        return
                    self.scanned = max(0, len(self.buffer) - 4)
                    break
                del self.buffer[:end]
                self.in_message, self.scanned = False, 0
                self.server.accepted += 1
                self.reply("250 2.0.0 OK")
                continue
            newline = self.buffer.find(b"\n", self.scanned)
            if newline < 0:
                if len(self.buffer) > limit:
                    self.end("500 5.5.2 Line too long")
                    return
                self.scanned = len(self.buffer)  # a line arriving in pieces: searched once
                break
            line = bytes(self.buffer[: newline + 1])
            del self.buffer[: newline + 1]
            self.scanned = 0
            if not self.command(line):
                return
        self.flush()

    def command(self, line: bytes) -> bool:
        """Answer one command; ``False`` when the rest must wait (or the session ended)."""
        verb = line[:4].upper()
        if verb == b"DATA" and self.recipients:
            self.recipients = 0
            self.in_message = True
            self.reply("354 End data with <CR><LF>.<CR><LF>")
            self.flush()  # the client sends the message only after this
        elif verb == b"QUIT":
            self.end("221 2.0.0 Bye")
            return False
        elif verb in (b"EHLO", b"HELO"):
            self.reply("250-simulator\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8")
        elif verb == b"RCPT":
            address = _recipient(line)
            if self.server.reads_clock:
                self.waiting = True
                self.server.answer_later(self.recipient_later(address))
                return False
            self.recipient(address, self.server.refusal_at(address, None))
        elif verb == b"DATA":  # no recipient was accepted
            self.reply("554 5.5.1 Error: no valid recipients")  # Postfix's words
        else:  # MAIL, RSET, NOOP
            if verb in (b"MAIL", b"RSET"):
                self.recipients = 0
            self.reply("250 2.0.0 OK")
        return True

    def recipient(self, address: str, refusal: str | None) -> None:
        if refusal is None:
            self.recipients += 1
            self.reply("250 2.1.5 OK")
        else:
            self.server.refused += 1
            self.reply(refusal)

    async def recipient_later(self, address: str) -> None:
        """An RCPT whose answer depends on the simulated time; then the commands after it."""
        self.recipient(address, await self.server.refusal(address))
        self.waiting = False
        self.answer_arrived()


def _recipient(line: bytes) -> str:
    address = line.decode(errors="replace").partition(":")[2]
    return address.strip().split()[0].strip("<>") if address.strip() else ""


def message_end(buffer: bytes | bytearray, scanned: int = 0) -> int | None:
    """Where the message at the start of ``buffer`` ends, past its lone-dot line (``None``:
    not arrived yet); ``scanned``: how far an earlier call already looked. Lines before it
    may end in a dot (``The end.``) or be dot-stuffed (``..``)."""
    if buffer.startswith(b".\r\n"):  # no body at all
        return 3
    found = buffer.find(b"\n.\r\n", scanned)
    return None if found < 0 else found + 4


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

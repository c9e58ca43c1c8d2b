"""An SMTP sink on loopback (aiosmtpd): keeps every message, can inject failures.

The stack runs it as a process (``python -m mailer.stack.smtp_sink``), each message kept as
a ``.eml`` file in the outbox; tests run it in-process (a real TCP server on a thread) and
set failure rules to rehearse 4xx/5xx replies per recipient, per stage, or for everything.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import signal
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

REPLY_TEXT = {
    421: "4.3.2 Service not available, closing channel",
    450: "4.2.1 Mailbox busy, try again later",
    451: "4.3.0 Local error in processing, try again later",
    452: "4.2.2 Mailbox full",
    550: "5.1.1 Mailbox does not exist",
    552: "5.3.4 Message too big",
    553: "5.1.3 Bad destination mailbox address",
    554: "5.7.1 Message rejected",
}


def reply(code: int, text: str | None = None) -> str:
    return f"{code} {text or REPLY_TEXT.get(code, 'Injected failure')}"


@dataclass
class FailureRule:
    """Reply ``code`` to recipients matching ``pattern`` ("*" or "all" = every recipient)."""

    pattern: str
    code: int
    # "rcpt", "data", or "drop": the message is taken, then the connection closes before
    # the reply to its final dot (the client cannot know whether it was delivered).
    stage: str = "rcpt"
    # Refuse only each address's first ``times`` tries (greylisting); None: always.
    times: int | None = None
    text: str | None = None  # the reply's text (default: REPLY_TEXT's for the code)
    _tries: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def matches(self, address: str) -> bool:
        if not (
            self.pattern in {"*", "all"} or fnmatch.fnmatch(address.lower(), self.pattern.lower())
        ):
            return False
        if self.times is None:
            return True
        tries = self._tries[address] = self._tries.get(address, 0) + 1
        return tries <= self.times


@dataclass
class StoredMessage:
    mail_from: str
    recipients: list[str]
    data: bytes


@dataclass
class SinkHandler:
    """aiosmtpd handler keeping messages in memory and, when ``outbox`` is set, on disk."""

    outbox: Path | None = None
    rules: list[FailureRule] = field(default_factory=list)
    messages: list[StoredMessage] = field(default_factory=list)
    refused: list[tuple[str, int]] = field(default_factory=list)  # (address, code) at RCPT
    sequence: int = 0
    delay_seconds: float = 0.0  # per message, to rehearse a slow server
    step_delay_seconds: float = 0.0  # before each MAIL, RCPT and DATA reply: a slow provider
    keep_in_memory: bool = True  # the stack's long-running sink keeps messages on disk only
    # Advertise ESMTP PIPELINING (RFC 2920), as Postfix and the large providers do; aiosmtpd
    # reads a pipelined group's commands one after another either way.
    pipelining: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(  # noqa: N802 (aiosmtpd calls handle_<VERB>)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            *first, last = responses
            return [*first, "250-PIPELINING", last]
        return responses

    def _rule_for(self, address: str, stage: str) -> FailureRule | None:
        for rule in self.rules:
            if rule.stage == stage and rule.matches(address):
                return rule
        return None

    async def handle_MAIL(  # noqa: N802 (aiosmtpd calls handle_<VERB>)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.step_delay_seconds:
            await asyncio.sleep(self.step_delay_seconds)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802 (aiosmtpd calls handle_<VERB>)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.step_delay_seconds:
            await asyncio.sleep(self.step_delay_seconds)
        rule = self._rule_for(address, "rcpt")
        if rule is not None:
            with self._lock:
                self.refused.append((address, rule.code))
            return reply(rule.code, rule.text)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (aiosmtpd calls handle_<VERB>)
        if self.delay_seconds or self.step_delay_seconds:
            await asyncio.sleep(self.delay_seconds + self.step_delay_seconds)
        for address in envelope.rcpt_tos:
            rule = self._rule_for(address, "data")
            if rule is not None:
                return reply(rule.code, rule.text)
        data = envelope.original_content or b""
        stored = StoredMessage(
            mail_from=str(envelope.mail_from), recipients=list(envelope.rcpt_tos), data=data
        )
        if any(self._rule_for(address, "drop") for address in envelope.rcpt_tos):
            with self._lock:
                self.messages.append(stored)  # delivered, but the client never hears so
            if isinstance(server.transport, asyncio.Transport):
                server.transport.abort()
            return "250 2.0.0 OK: queued (never sent: the connection is gone)"
        with self._lock:
            self.sequence += 1
            number = self.sequence
            if self.keep_in_memory:
                self.messages.append(stored)
        if self.outbox is not None:
            self.outbox.mkdir(parents=True, exist_ok=True)
            name = f"{time.time_ns()}-{number:06d}.eml"
            (self.outbox / name).write_bytes(data)
        return "250 2.0.0 OK: queued"

    def recipients(self) -> list[str]:
        with self._lock:
            return [address for message in self.messages for address in message.recipients]


class Credentials:
    """AUTH LOGIN/PLAIN checked against one username and password (535 otherwise)."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username.encode()
        self.password = password.encode()

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == self.username
            and data.password == self.password
        )
        return AuthResult(success=ok, handled=False)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class SmtpSink:
    """A running sink: ``start()`` binds ``host:port`` (0 picks a free port)."""

    def __init__(
        self,
        handler: SinkHandler | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: tuple[str, str] | None = None,
        smtputf8: bool = False,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.handler = handler or SinkHandler()
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
        if tls_context is not None:  # offer STARTTLS with this certificate
            kwargs["tls_context"] = tls_context
        if credentials is not None:
            kwargs |= {
                "authenticator": Credentials(*credentials),
                "auth_required": True,
                "auth_require_tls": False,
            }
        # aiosmtpd's controller connects to its own port to check readiness, so port 0
        # ("any free port") is resolved here first.
        self.controller = Controller(
            self.handler, hostname=host, port=port or _free_port(host), ready_timeout=10, **kwargs
        )
        self.host = host

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="SMTP sink keeping messages as .eml files")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--outbox", type=Path, help="keep each message as a .eml file here")
    parser.add_argument("--no-outbox", action="store_true", help="count messages, keep none")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="delay each MAIL, RCPT and DATA reply this long (a provider across the internet)",
    )
    parser.add_argument(
        "--pipelining", action="store_true", help="advertise ESMTP PIPELINING (RFC 2920)"
    )
    args = parser.parse_args()
    if args.outbox is None and not args.no_outbox:
        parser.error("give --outbox DIR or --no-outbox")
    outbox = None if args.no_outbox else args.outbox
    handler = SinkHandler(
        outbox=outbox,
        keep_in_memory=False,
        step_delay_seconds=args.latency_ms / 1000,
        pipelining=args.pipelining,
    )
    sink = SmtpSink(handler, host=args.host, port=args.port).start()
    print(f"smtp sink listening on {args.host}:{sink.port}, outbox {outbox}", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    sink.stop()


if __name__ == "__main__":
    main()

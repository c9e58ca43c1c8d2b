"""ESMTP PIPELINING over real TCP: against a sink that advertises it, MAIL, RCPT and DATA go in
one flight (counted by a proxy between client and server) and refusals in the middle of a
group are raised exactly as one command at a time raises them; against one that does not,
the commands go one at a time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiosmtplib
import pytest
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import SMTPProtocol

from activities.smtp_envelope import (
    MAX_UNREAD_REPLIES,
    ReplyQueueProtocol,
    pipelines,
    quoted_path,
)
from activities.smtp_session import close_smtp, open_smtp
from activities.smtp_transaction import send_message
from mailer.mail.views import AccountView
from mailer.stack.smtp_sink import FailureRule, SinkHandler, SmtpSink

SENDER = "news@shop.example"
# Messages in turn on one session, and how each ends: refusals in the middle of a group.
REFUSALS_IN_A_GROUP = [
    ("a@example.org", "ok"),
    ("gone@example.org", "SMTPRecipientRefused 550"),
    ("b@example.org", "ok"),
    ("full@example.org", "SMTPRecipientRefused 451"),
    ("spam@example.org", "SMTPDataError 554"),
    ("c@example.org", "ok"),
]
MESSAGE = b"Subject: hi\r\n\r\nHello\r\n"


@dataclass
class Counter:
    """Chunks the client wrote, as the server's side of the proxy read them."""

    client_writes: int = 0


@contextlib.asynccontextmanager
async def counting_proxy(target: int, counter: Counter) -> AsyncIterator[int]:
    """A TCP proxy in this loop counting the client's writes (one read per write on
    loopback: the client waits for a reply between writes)."""

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if count:
                    counter.client_writes += 1
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.close()

    async def connection(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pump(client_r, server_w, True), pump(server_r, client_w, False))

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port


def account(port: int) -> AccountView:
    return AccountView.without_login("127.0.0.1", port, SENDER)


@pytest.fixture(params=[True, False], ids=["pipelining", "one-at-a-time"])
def sink(request: pytest.FixtureRequest) -> Iterator[SmtpSink]:
    rules = [
        FailureRule("gone@example.org", 550, text="5.1.1 no such user"),
        FailureRule("full@example.org", 451, text="4.2.2 mailbox full, try later"),
        FailureRule("spam@example.org", 554, stage="data", text="5.7.1 refused at DATA"),
    ]
    with SmtpSink(SinkHandler(rules=rules, pipelining=request.param)) as running:
        yield running


async def send(smtp: aiosmtplib.SMTP, recipient: str) -> str:
    """``ok``, or the refusal's class and code."""
    try:
        await send_message(smtp, SENDER, recipient, MESSAGE, smtputf8=False)
    except aiosmtplib.SMTPResponseException as exc:
        return f"{type(exc).__name__} {exc.code}"
    return "ok"


async def test_refusals_in_a_group_are_each_recipients_own_and_the_session_goes_on(
    sink: SmtpSink,
) -> None:
    smtp = await open_smtp(account(sink.port), timeout=10)
    try:
        assert pipelines(smtp) == sink.handler.pipelining
        outcomes = [await send(smtp, address) for address, _ in REFUSALS_IN_A_GROUP]
    finally:
        await close_smtp(smtp)
    assert outcomes == [outcome for _, outcome in REFUSALS_IN_A_GROUP]
    assert sink.handler.recipients() == ["a@example.org", "b@example.org", "c@example.org"]
    assert [m.data.replace(b"\r\n", b"\n") for m in sink.handler.messages] == [
        MESSAGE.replace(b"\r\n", b"\n")
    ] * 3


async def test_a_pipelined_message_takes_two_writes_instead_of_four(sink: SmtpSink) -> None:
    counter = Counter()
    async with counting_proxy(sink.port, counter) as port:
        smtp = await open_smtp(account(port), timeout=10)
        try:
            await send(smtp, "first@example.org")  # the session's own commands settle
            before = counter.client_writes
            for number in range(10):
                assert await send(smtp, f"r{number}@example.org") == "ok"
            per_message = (counter.client_writes - before) / 10
        finally:
            await close_smtp(smtp)
    assert per_message == (2 if sink.handler.pipelining else 4)


@contextlib.asynccontextmanager
async def silent_to_rcpt(pipelining: bool, closed: asyncio.Event) -> AsyncIterator[int]:
    """An SMTP server over real TCP that answers everything but RCPT TO; once the client has
    given up and hung up, it sets ``closed``. Yields its port."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 slow.example ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                offered = b"250-slow.example\r\n250 PIPELINING\r\n"
                writer.write(offered if pipelining else b"250 slow.example\r\n")
            elif verb == b"RCPT":
                continue  # no reply: the client's read times out
            elif verb == b"DATA":
                writer.write(b"354 go on\r\n")
            else:
                writer.write(b"250 ok\r\n")
        closed.set()
        writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-at-a-time"])
async def test_a_reply_that_never_comes_ends_the_session(pipelining: bool) -> None:
    """RCPT's reply does not come within the timeout: the send fails as a timeout and the
    session hangs up, so a reply arriving later is never read as another command's."""
    closed = asyncio.Event()
    async with silent_to_rcpt(pipelining, closed) as port:
        smtp = await open_smtp(account(port), timeout=0.3)
        assert pipelines(smtp) == pipelining
        with pytest.raises(aiosmtplib.SMTPReadTimeoutError, match="Timed out"):
            await send(smtp, "slow@example.org")
        await asyncio.wait_for(closed.wait(), timeout=10)
        assert not smtp.is_connected
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await send(smtp, "next@example.org")


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-at-a-time"])
async def test_a_421_to_the_envelope_hangs_up_as_aiosmtplib_does(pipelining: bool) -> None:
    """421 says the server is closing the channel: the refusal is raised as the server's,
    and the session is closed (the sink here would have kept it open)."""
    rule = FailureRule("closing@example.org", 421, text="4.3.2 shutting down")
    with SmtpSink(SinkHandler(rules=[rule], pipelining=pipelining)) as running:
        smtp = await open_smtp(account(running.port), timeout=10)
        assert await send(smtp, "first@example.org") == "ok"
        assert await send(smtp, "closing@example.org") == "SMTPRecipientRefused 421"
        assert not smtp.is_connected
        await close_smtp(smtp)
    assert running.handler.recipients() == ["first@example.org"]


async def test_a_server_flooding_replies_is_refused_not_buffered() -> None:
    """More replies than any group asks for, unread: the session fails with one clear
    error instead of keeping them all."""
    protocol = ReplyQueueProtocol(SMTPProtocol(), asyncio.get_running_loop(), pipelining=True)
    protocol.data_received(b"250 ok\r\n" * (MAX_UNREAD_REPLIES + 1))
    protocol.data_received(b"250 later\r\n")
    with pytest.raises(aiosmtplib.SMTPResponseException, match="Too many replies"):
        await protocol.read_response(timeout=1)


@pytest.mark.parametrize(
    "address",
    [
        "a@example.org",
        "first.last+tag@sub.example.org",
        "пример@пример.рф",
        "A Name <a@example.org>",
        '"quoted local"@example.org',
        "a@example.org (comment)",
        "a@[192.0.2.1]",
        "a@example.org,b@example.org",
        "a@example.org;x",
        "a@example.org>",
        "a@@example.org",
        "a\x00@example.org",
        "@example.org",
        "a@example.org\r\nRSET",
        "<a>@b",
        "a@example.org\tRSET",
        "mail from:<x@y> size=1@z",
    ],
)
def test_the_envelope_path_is_what_aiosmtplib_would_write(address: str) -> None:
    """The fast path for plain addresses writes exactly what ``quote_address`` writes; the
    rest still goes through it."""
    assert quoted_path(address, "utf-8") == quote_address(address).encode("utf-8")


@pytest.mark.parametrize("address", ["a b@example.org", "a@b\x0bc"])
def test_an_address_that_could_smuggle_a_command_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match="not permitted in an SMTP mailbox"):
        quoted_path(address, "utf-8")

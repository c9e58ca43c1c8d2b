"""The simulator's SMTP responder reads past a message to its lone-dot line, whatever the
lines before it end in and however its bytes arrive, counts nothing from a client that
hangs up mid-message, answers RCPT by the simulated clock where a rule has a window, and
ends a session whose message or command outgrows its buffer with a reply instead of an
error."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from mailer.simulate.fakes import SimulatedSmtp, message_end
from mailer.simulate.options import FailRule

MESSAGES = [
    b".\r\n",  # no body at all
    b"Subject: x\r\n.\r\n",
    b"Subject: x\r\n\r\nThe end.\r\n..\r\nstill the body.\r\n.\r\n",  # dots mid-line, stuffed
]


@pytest.mark.parametrize("message", MESSAGES)
def test_the_message_ends_at_its_lone_dot_and_the_next_command_is_left(message: bytes) -> None:
    data = message + b"QUIT\r\n"
    end = message_end(data)
    assert end == len(message) and data[end:] == b"QUIT\r\n"


@pytest.mark.parametrize("message", MESSAGES)
def test_a_message_cut_anywhere_is_found_once_the_rest_arrives(message: bytes) -> None:
    for cut in range(len(message)):
        assert message_end(message[:cut]) is None, cut
        # Searched again from where the first part left off, less what a dot line could span.
        assert message_end(message, max(0, cut - 4)) == len(message), cut


async def never() -> datetime:
    raise AssertionError("no rule has a window: the clock is not read")


async def session_replies(port: int, sent: bytes) -> list[bytes]:
    """Everything the responder answers to ``sent``, until it closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(sent)
    await writer.drain()
    replies = await asyncio.wait_for(reader.read(), timeout=10)  # up to its hang-up
    writer.close()
    return replies.splitlines()


@pytest.mark.parametrize(
    ("sent", "last_reply"),
    [
        (
            b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n" + b"x" * 4096,
            b"552 5.3.4 Message size exceeds fixed limit",
        ),
        (b"EHLO " + b"c" * 4096, b"500 5.5.2 Line too long"),
    ],
    ids=["message", "command"],
)
async def test_a_session_outgrowing_the_buffer_is_answered_and_closed(
    sent: bytes, last_reply: bytes
) -> None:
    smtp = SimulatedSmtp([], never, max_message_bytes=1024)
    port = await smtp.start()
    try:
        replies = await session_replies(port, sent)
        assert replies[0].startswith(b"220 ") and replies[-1] == last_reply
        # The responder is still there for the next client.
        after = await session_replies(port, b"QUIT\r\n")
        assert after[-1] == b"221 2.0.0 Bye"
    finally:
        await smtp.stop()
    assert smtp.accepted == 0


ENVELOPE = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"


async def test_a_pipelined_transaction_is_accepted_and_answered_in_order() -> None:
    smtp = SimulatedSmtp([], never)
    port = await smtp.start()
    try:
        replies = await session_replies(port, ENVELOPE + MESSAGES[2] + b"QUIT\r\n")
    finally:
        await smtp.stop()
    codes = [reply[:4] for reply in replies if not reply.startswith(b"250-")]
    assert codes == [b"220 ", b"250 ", b"250 ", b"250 ", b"354 ", b"250 ", b"221 "]
    assert (smtp.accepted, smtp.refused) == (1, 0)


async def test_a_client_hanging_up_mid_message_is_not_counted() -> None:
    smtp = SimulatedSmtp([], never)
    port = await smtp.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(ENVELOPE + b"Subject: x\r\n\r\nhalf a mess")
        await writer.drain()
        assert (await reader.readuntil(b"354 End data with <CR><LF>.<CR><LF>\r\n")).startswith(
            b"220 "
        )
        writer.close()
        await writer.wait_closed()
        after = await session_replies(port, b"QUIT\r\n")  # still there for the next client
        assert after[-1] == b"221 2.0.0 Bye"
    finally:
        await smtp.stop()
    assert smtp.accepted == 0


async def test_a_windowed_rule_refuses_by_the_simulated_clock() -> None:
    start = datetime(2026, 12, 14, 9, 0, tzinfo=UTC)
    rule = FailRule("*@corp.example", 450, start, start + timedelta(hours=1), "4.7.1 Greylisted")
    times = iter([start + timedelta(minutes=30), start + timedelta(hours=2)])

    async def clock() -> datetime:
        return next(times)

    smtp = SimulatedSmtp([rule], clock)
    port = await smtp.start()
    rcpt = b"MAIL FROM:<a@b>\r\nRCPT TO:<x@corp.example>\r\nRSET\r\n"
    try:
        inside = await session_replies(port, b"EHLO c\r\n" + rcpt + b"QUIT\r\n")
        outside = await session_replies(port, b"EHLO c\r\n" + rcpt + b"QUIT\r\n")
    finally:
        await smtp.stop()
    # The commands after a RCPT that waits for the clock are answered after it, in order.
    assert inside[-4:] == [
        b"250 2.0.0 OK",
        b"450 4.7.1 Greylisted",
        b"250 2.0.0 OK",
        b"221 2.0.0 Bye",
    ]
    assert outside[-3:] == [b"250 2.1.5 OK", b"250 2.0.0 OK", b"221 2.0.0 Bye"]
    assert (smtp.accepted, smtp.refused) == (0, 1)


async def test_commands_arriving_a_byte_at_a_time_are_answered() -> None:
    smtp = SimulatedSmtp([], never)
    port = await smtp.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for byte in ENVELOPE + MESSAGES[1] + b"QUIT\r\n":
            writer.write(bytes([byte]))
            await writer.drain()
        replies = (await asyncio.wait_for(reader.read(), timeout=10)).splitlines()
        writer.close()
    finally:
        await smtp.stop()
    assert replies[-2:] == [b"250 2.0.0 OK", b"221 2.0.0 Bye"]
    assert smtp.accepted == 1

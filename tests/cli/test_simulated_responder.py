"""The simulator's SMTP responder reads past a message to its lone-dot line, whatever the
lines before it end in, stops at a client that hangs up mid-message, and ends a session
whose message or command outgrows its buffer with a reply instead of an error."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from mailer.simulate.fakes import MessageTooLong, SimulatedSmtp, skip_message


async def reader_of(data: bytes, *, eof: bool, limit: int = 2**16) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=limit)
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


@pytest.mark.parametrize(
    "message",
    [
        b".\r\n",  # no body at all
        b"Subject: x\r\n.\r\n",
        b"Subject: x\r\n\r\nThe end.\r\n..\r\nstill the body.\r\n.\r\n",  # dots mid-line, stuffed
    ],
)
async def test_the_message_ends_at_its_lone_dot_and_the_next_command_is_left(
    message: bytes,
) -> None:
    reader = await reader_of(message + b"QUIT\r\n", eof=True)
    assert await skip_message(reader)
    assert await reader.readline() == b"QUIT\r\n"


async def test_a_client_hanging_up_mid_message_ends_the_session() -> None:
    reader = await reader_of(b"Subject: x\r\n\r\nhalf a mess", eof=True)
    assert not await skip_message(reader)


async def test_a_message_longer_than_the_buffer_without_a_line_end_is_refused() -> None:
    reader = await reader_of(b"x" * 100, eof=False, limit=32)
    with pytest.raises(MessageTooLong):
        await skip_message(reader)


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

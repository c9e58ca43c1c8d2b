"""The simulator's SMTP responder reads past a message to its lone-dot line, whatever the
lines before it end in, and stops at a client that hangs up mid-message."""

from __future__ import annotations

import asyncio

import pytest

from mailer.simulate.fakes import _skip_message


async def reader_of(data: bytes, *, eof: bool) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
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
    assert await _skip_message(reader)
    assert await reader.readline() == b"QUIT\r\n"


async def test_a_client_hanging_up_mid_message_ends_the_session() -> None:
    reader = await reader_of(b"Subject: x\r\n\r\nhalf a mess", eof=True)
    assert not await _skip_message(reader)

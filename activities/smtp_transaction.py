"""One message's SMTP transaction (MAIL, RCPT, DATA, the message, the final dot) on an open
aiosmtplib session, step by step so a failure says where it happened (MAIL, RCPT and DATA
in one flight where the server pipelines: :mod:`activities.smtp_envelope`).

Where matters once: a timeout or a dropped connection *after the final dot* is not a refusal
— the server may have accepted the message and only its reply was lost — so it is raised as
:class:`OutcomeUnknown`, and the send path neither counts the message as sent nor sends it
again at once. Any refusal resets the envelope (RSET) so the session can go on.
"""

from __future__ import annotations

import contextlib
import re

import aiosmtplib
from aiosmtplib import SMTPDataError, SMTPServerDisconnected, SMTPStatus

from activities.smtp_envelope import write_envelope

# RFC 5321 4.5.2: a line starting with a period gets one more.
_LEADING_PERIOD = re.compile(rb"(?m)^\.")
_LONE_LINE_ENDS = re.compile(rb"\r\n|\r|\n")


class OutcomeUnknown(Exception):
    """The message and its final dot were written; the reply never came."""

    def __init__(self, cause: BaseException) -> None:
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        super().__init__(f"no reply after the final dot: {type(cause).__name__}: {reason}")
        self.cause = cause


def wire_form(data: bytes) -> bytes:
    """``data`` as it goes after DATA: CRLF line ends, leading periods doubled, the final dot."""
    if _already_wire_form(data):  # every message mailer builds: no rewriting, no copy but one
        return data + b".\r\n"
    data = _LONE_LINE_ENDS.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return _LEADING_PERIOD.sub(b"..", data) + b".\r\n"


def _already_wire_form(data: bytes) -> bool:
    """Whether ``data`` ends in CRLF, has no CR or LF outside a CRLF and no line starting
    with a period: three scans in C instead of two regular-expression rewrites."""
    crlf = data.count(b"\r\n")
    return (
        data.endswith(b"\r\n")
        and data.count(b"\n") == crlf
        and data.count(b"\r") == crlf
        and not data.startswith(b".")
        and b"\n." not in data
    )


async def send_message(
    smtp: aiosmtplib.SMTP,
    sender: str,
    recipient: str,
    data: bytes,
    *,
    smtputf8: bool,
) -> None:
    """Send ``data`` from ``sender`` to ``recipient``.

    Raises aiosmtplib's refusals (``SMTPSenderRefused``, ``SMTPRecipientRefused``,
    ``SMTPDataError``), its connection errors before the final dot, and
    :class:`OutcomeUnknown` after it.
    """
    encoding = "utf-8" if smtputf8 else "ascii"
    options = ["SMTPUTF8"] if smtputf8 else []
    if smtputf8 and not smtp.supports_extension("smtputf8"):
        raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
    body = wire_form(data)
    if smtp.supports_extension("size"):
        # RFC 1870: the octets as sent, less the dot-stuffing and the final dot.
        options.insert(0, f"SIZE={len(body) - 3}")
    try:
        await write_envelope(smtp, sender, recipient, options, encoding)
    except aiosmtplib.SMTPResponseException:
        await _reset(smtp)
        raise
    await _write_body(smtp, body)


async def _write_body(smtp: aiosmtplib.SMTP, body: bytes) -> None:
    protocol = smtp.protocol
    if protocol is None:
        raise SMTPServerDisconnected("Connection lost")
    # Written and then read at once: nothing else uses this session meanwhile (one message
    # at a time), and the reply cannot arrive before read_response is waiting for it.
    protocol.write(body)
    try:
        response = await protocol.read_response(timeout=smtp.timeout)
    except (
        TimeoutError,
        aiosmtplib.SMTPServerDisconnected,
        aiosmtplib.SMTPTimeoutError,
        OSError,
    ) as exc:
        smtp.close()
        raise OutcomeUnknown(exc) from exc
    if response.code != SMTPStatus.completed:
        await _reset(smtp)
        raise SMTPDataError(response.code, response.message)


async def _reset(smtp: aiosmtplib.SMTP) -> None:
    """RSET after a refusal, so the session's next message starts clean; a server that drops
    the connection meanwhile is found by the next command."""
    with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
        await smtp.rset()

"""SMTP failures sorted into transient, recipient and configuration errors."""

from __future__ import annotations

import ssl

import aiosmtplib
import pytest

from activities.smtp_errors import ErrorClass, Stage, classify_exception, classify_reply


@pytest.mark.parametrize(
    ("stage", "code", "expected"),
    [
        (Stage.RCPT, 451, ErrorClass.TRANSIENT),
        (Stage.DATA, 421, ErrorClass.TRANSIENT),
        (Stage.MAIL, 452, ErrorClass.TRANSIENT),
        (Stage.RCPT, 550, ErrorClass.RECIPIENT),
        (Stage.DATA, 554, ErrorClass.RECIPIENT),
        (Stage.AUTH, 535, ErrorClass.CONFIGURATION),
        (Stage.MAIL, 550, ErrorClass.CONFIGURATION),
        (Stage.HELO, 501, ErrorClass.CONFIGURATION),
    ],
)
def test_reply_codes(stage: Stage, code: int, expected: ErrorClass) -> None:
    assert classify_reply(stage, code) is expected


def test_exceptions() -> None:
    auth = classify_exception(
        aiosmtplib.SMTPAuthenticationError(535, "5.7.8 bad credentials"), Stage.AUTH
    )
    assert (
        auth.error_class is ErrorClass.CONFIGURATION and "authentication failed" in auth.describe()
    )
    refused = aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(550, "no such user", "x@y")]
    )
    assert classify_exception(refused, Stage.MAIL).error_class is ErrorClass.RECIPIENT
    sender = classify_exception(aiosmtplib.SMTPSenderRefused(553, "not allowed", "a@b"), Stage.MAIL)
    assert sender.error_class is ErrorClass.CONFIGURATION
    closing = classify_exception(aiosmtplib.SMTPResponseException(421, "closing"), Stage.DATA)
    assert closing.error_class is ErrorClass.TRANSIENT
    for exc in (
        aiosmtplib.SMTPServerDisconnected("gone"),
        aiosmtplib.SMTPConnectError("refused"),
        aiosmtplib.SMTPTimeoutError("slow"),
        ConnectionResetError("reset"),
    ):
        assert classify_exception(exc, Stage.MAIL).error_class is ErrorClass.TRANSIENT
    tls = classify_exception(ssl.SSLError("certificate verify failed"), Stage.TLS)
    assert tls.error_class is ErrorClass.CONFIGURATION


def test_descriptions_reaching_the_workflow_carry_no_address() -> None:
    refused = aiosmtplib.SMTPRecipientRefused(
        451, "4.2.2 <anna@example.com>: mailbox full", "anna@example.com"
    )
    failure = classify_exception(refused, Stage.RCPT)
    assert failure.describe() == "rcpt: 451 4.2.2 <<address>>: mailbox full"
    assert "anna@example.com" in failure.describe(redact=False)

"""SMTP failures sorted into transient, recipient and configuration errors."""

from __future__ import annotations

import ssl

import aiosmtplib
import pytest

from mailer.mail.smtp_replies import ErrorClass, Stage, classify_exception, classify_reply


@pytest.mark.parametrize(
    ("stage", "code", "text", "expected"),
    [
        (Stage.RCPT, 451, "4.7.1 Greylisted", ErrorClass.RECIPIENT_DEFERRED),
        (Stage.RCPT, 450, "", ErrorClass.RECIPIENT_DEFERRED),
        (Stage.RCPT, 452, "4.2.2 Mailbox full", ErrorClass.RECIPIENT_DEFERRED),
        (Stage.RCPT, 451, "try later", ErrorClass.RECIPIENT_DEFERRED),  # unclear: probed
        (Stage.RCPT, 451, "4.7.1 Rate limit exceeded, slow down", ErrorClass.TRANSIENT),
        (Stage.RCPT, 452, "4.3.1 Insufficient system storage", ErrorClass.TRANSIENT),
        (Stage.DATA, 452, "4.2.2 Mailbox full", ErrorClass.RECIPIENT_DEFERRED),
        (Stage.AUTH, 454, "", ErrorClass.TRANSIENT),
        (Stage.DATA, 421, "", ErrorClass.TRANSIENT),
        (Stage.MAIL, 452, "4.2.2 Mailbox full", ErrorClass.TRANSIENT),
        (Stage.RCPT, 550, "", ErrorClass.RECIPIENT),
        (Stage.DATA, 554, "", ErrorClass.RECIPIENT),
        (Stage.AUTH, 535, "", ErrorClass.CONFIGURATION),
        (Stage.MAIL, 550, "", ErrorClass.CONFIGURATION),
        (Stage.HELO, 501, "", ErrorClass.CONFIGURATION),
    ],
)
def test_reply_codes(stage: Stage, code: int, text: str, expected: ErrorClass) -> None:
    assert classify_reply(stage, code, text) is expected


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


@pytest.mark.parametrize(
    ("exc", "stage", "expected"),
    [
        # 454 4.7.0: temporary authentication failure (RFC 4954): try again later.
        (aiosmtplib.SMTPAuthenticationError(454, "4.7.0 try later"), Stage.AUTH, "transient"),
        (aiosmtplib.SMTPAuthenticationError(535, "5.7.8 bad"), Stage.AUTH, "configuration"),
        # A TLS connection dropped or reset during the handshake is the network, not us.
        (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), Stage.TLS, "transient"),
        (ssl.SSLZeroReturnError(6, "TLS/SSL connection has been closed"), Stage.TLS, "transient"),
        (ConnectionResetError(104, "Connection reset by peer"), Stage.TLS, "transient"),
        (aiosmtplib.SMTPServerDisconnected("Unexpected EOF (SSL)"), Stage.TLS, "transient"),
        # A certificate that does not verify is the account's configuration.
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), Stage.TLS, "configuration"),
        (
            aiosmtplib.SMTPConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] self-signed"),
            Stage.CONNECT,
            "configuration",
        ),
        (
            aiosmtplib.SMTPException("SMTP STARTTLS extension not supported by server."),
            Stage.TLS,
            "configuration",
        ),
    ],
)
def test_auth_and_tls_failures(exc: BaseException, stage: Stage, expected: str) -> None:
    assert classify_exception(exc, stage).error_class == expected


def test_descriptions_reaching_the_workflow_carry_no_address() -> None:
    refused = aiosmtplib.SMTPRecipientRefused(
        451, "4.2.2 <anna@example.com>: mailbox full", "anna@example.com"
    )
    failure = classify_exception(refused, Stage.RCPT)
    assert failure.describe() == "rcpt: 451 4.2.2 <<address>>: mailbox full"
    assert "anna@example.com" in failure.describe(redact=False)

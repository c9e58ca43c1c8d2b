"""SMTP failures sorted into transient, recipient and configuration errors."""

from __future__ import annotations

import ssl
import uuid
from datetime import UTC, datetime

import aiosmtplib
import pytest

from activities.ledger import CampaignView, RecipientView
from activities.messages import build_message, message_id_for
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


def test_message_is_rendered_and_its_id_is_stable() -> None:
    campaign = CampaignView(
        id=uuid.UUID(int=7),
        created_by_id=1,
        subject="{{ name }}, привет",
        html_body="<p>{{ company }}</p>",
        text_body="Hi {{ name }}",
        from_email="news@example.com",
        from_name="Shop",
    )
    recipient = RecipientView(
        id=42,
        email="anna@example.com",
        name="Анна",
        variables={"name": "Анна", "company": "Рога & <Копыта>"},
    )
    now = datetime(2026, 12, 7, 10, tzinfo=UTC)
    message = build_message(campaign, recipient, now)
    assert message["Subject"] == "Анна, привет"
    assert message["Message-ID"] == message_id_for(campaign.id, 42, "news@example.com")
    assert message["Message-ID"] == build_message(campaign, recipient, now)["Message-ID"]
    assert message["To"] == "Анна <anna@example.com>"
    html = message.get_body(("html",))
    assert html is not None and "<p>Рога &amp; &lt;Копыта&gt;</p>" in html.get_content()

"""Each rule of mailer.mail.temporary_replies against the real replies it was written for.

Sources: Postfix's own replies (smtpd, postscreen, anvil) and its policy delegation
(postgrey, DEFER_IF_PERMIT), Exim and its greylistd, MailEnable, a Plesk greylisting milter,
Gmail, Yandex, Mail.ru and nic.ru as their help pages and bounce reports quote them. The
address in a reply is as the server quotes it."""

from __future__ import annotations

import pytest

from mailer.mail.temporary_replies import (
    TemporaryKind,
    parse_reply,
    read_temporary,
    retry_delay_minutes,
)

RECIPIENT, DOMAIN = TemporaryKind.RECIPIENT, TemporaryKind.DOMAIN
THROTTLE, UNCLEAR = TemporaryKind.THROTTLE, TemporaryKind.UNCLEAR

REAL_REPLIES = [
    # Greylisting: the recipient waits alone (its first retry passes the usual 5 minutes).
    (
        450,
        "4.2.0 <a@corp.example>: Recipient address rejected: Greylisted, see "
        "http://postgrey.schweikert.ch/help/corp.example.html",
        RECIPIENT,
    ),  # postgrey
    (
        450,
        "4.7.1 <a@corp.example>: Recipient address rejected: Greylisted, please try again later",
        RECIPIENT,
    ),  # Postfix DEFER_IF_PERMIT from a policy service
    (451, "4.7.1 Greylisted, please try again later", RECIPIENT),  # Exim + greylistd
    (451, "Greylisting, try again in 300 seconds", RECIPIENT),
    (
        451,
        "This server employs greylisting as a means of reducing spam. Please resend e-mail shortly",
        RECIPIENT,
    ),  # MailEnable
    (450, "4.2.0 Sender address rejected: Greylisted for 300 sec.", RECIPIENT),
    # The mailbox's own state.
    (452, "4.2.2 Mailbox full", RECIPIENT),
    (
        452,
        "4.2.2 The email account that you tried to reach is over quota. Please direct the "
        "recipient to https://support.google.com/mail/?p=OverQuotaTemp",
        RECIPIENT,
    ),  # Gmail
    (452, "4.2.2 Mailbox size limit exceeded", RECIPIENT),  # Yandex
    (
        450,
        "4.2.1 The user you are trying to contact is receiving mail at a rate that prevents "
        "additional messages from being delivered. Please resend your message at a later point.",
        RECIPIENT,
    ),  # Gmail
    (451, "4.7.1 Ratelimit exceeded for mailbox. Try again later.", RECIPIENT),  # Yandex
    (450, "4.2.1 Mailbox busy, try again later", RECIPIENT),
    (
        450,
        "4.1.1 <a@corp.example>: Recipient address rejected: unverified address: host "
        "mx.corp.example[192.0.2.1] said: 450 4.2.1 try later",
        RECIPIENT,
    ),  # Postfix
    (450, "Requested mail action not taken: mailbox unavailable", RECIPIENT),  # RFC 5321's 450
    (452, "mailbox is full (MTA-imposed quota exceeded while writing to file)", RECIPIENT),
    # The recipient's domain.
    (450, "4.1.2 <a@nodomain.example>: Recipient address rejected: Domain not found", DOMAIN),
    (451, "4.4.0 DNS temporary failure", DOMAIN),
    (451, "4.4.3 Routing server failure", DOMAIN),
    (451, "domain.ru prohibited. Disk quota exceeded", DOMAIN),  # nic.ru, the domain's quota
    (451, "Temporary lookup failure", DOMAIN),
    # The session: the campaign defers (and the breaker counts).
    (421, "4.7.0 Too many connections", THROTTLE),
    (421, "4.7.0 mx.example Error: too many connections from 192.0.2.7", THROTTLE),  # anvil
    (421, "4.7.0 Try again later, closing connection.", THROTTLE),  # Gmail
    (421, "4.7.0 IP frequency limit exceeded", THROTTLE),  # Mail.ru
    (421, "4.3.2 Service not available, closing channel", THROTTLE),
    (451, "4.7.1 Rate limit exceeded, slow down", THROTTLE),
    (451, "4.7.1 <a@corp.example>: Recipient address rejected: Rate limit exceeded", THROTTLE),
    (451, "4.7.1 too many connections from your host", THROTTLE),  # Yandex
    (451, "4.7.0 Sender rate overlimit - 301.0 / 1h", UNCLEAR),  # Exim's wording says neither
    (450, "4.7.1 Error: too much mail from 192.0.2.7", UNCLEAR),
    (452, "4.5.3 Error: too many recipients", THROTTLE),  # Postfix
    (452, "4.3.1 Insufficient system storage", THROTTLE),  # Postfix's queue is full
    (451, "4.3.5 Server configuration problem", THROTTLE),  # Postfix
    (451, "4.4.5 Insufficient system resources", THROTTLE),
    (450, "4.1.8 <news@news.example>: Sender address rejected: Domain not found", THROTTLE),
    (451, "4.5.0 Error: too many errors", THROTTLE),
    # Says neither: a run of these is probed.
    (451, "4.7.1 Service unavailable - try again later", UNCLEAR),  # Plesk greylisting milter
    (451, "4.7.1 Sorry, the service is currently unavailable. Please come later.", UNCLEAR),
    (451, "Temporary local problem - please try later", UNCLEAR),  # Exim
    (451, "4.3.0 Mail server temporarily rejected message.", UNCLEAR),  # Gmail
    (451, "4.3.0 Local error in processing, try again later", UNCLEAR),
    (451, "Please try another server", UNCLEAR),  # nic.ru
    (454, "4.7.1 <a@corp.example>: Relay access denied", UNCLEAR),
    (450, "4.7.1 Client host rejected: cannot find your hostname, [192.0.2.7]", UNCLEAR),
    (451, "Try again later", UNCLEAR),
]


@pytest.mark.parametrize(("code", "text", "kind"), REAL_REPLIES)
def test_a_real_reply_is_read_as_its_server_meant_it(
    code: int, text: str, kind: TemporaryKind
) -> None:
    verdict = read_temporary(code, text)
    assert verdict.kind == kind, verdict.why


def test_the_verdict_names_the_rule() -> None:
    assert read_temporary(452, "4.2.2 Mailbox full").why == "the mailbox's state"
    assert read_temporary(450, "4.7.1 Greylisted").why == "greylisting"
    assert read_temporary(451, "whatever").why == "the reply does not say"


def test_the_enhanced_code_is_read_before_the_wording() -> None:
    # "rate" in the text, but X.2.x: the mailbox is the subject.
    assert read_temporary(450, "4.2.1 receiving mail at a rate").kind == RECIPIENT
    # The bare 450 is a mailbox; with a policy code it says nothing either way.
    assert read_temporary(450, "busy").kind == RECIPIENT
    assert read_temporary(450, "4.7.1 policy").kind == UNCLEAR


def test_only_the_start_of_a_hostile_reply_is_read() -> None:
    reply = parse_reply(451, "x" * 100_000 + " greylisted")
    assert len(reply.text) == 512
    assert read_temporary(451, "x" * 100_000 + " greylisted").kind == UNCLEAR


@pytest.mark.parametrize(
    ("attempts", "minutes"), [(0, 5), (1, 5), (2, 15), (3, 30), (4, 60), (9, 60)]
)
def test_each_retry_waits_longer_up_to_the_last_step(attempts: int, minutes: float) -> None:
    assert retry_delay_minutes(attempts, (5, 15, 30, 60)) == minutes


def test_an_empty_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        retry_delay_minutes(1, ())

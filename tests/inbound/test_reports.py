"""Reading what comes back (pure): bounces, complaints, mailto unsubscribes, and the rest."""

from __future__ import annotations

from email.header import Header

from mailer.inbound.reports import InboundKind, read
from tests.support import inbound_samples as samples

TOKEN = "AbC-_" * 11  # shaped like a token (55 URL-safe characters); read() does not verify
LIST_UNSUBSCRIBE = (
    f"<https://news.example.com/u/{TOKEN}>, "
    f"<mailto:unsubscribe@news.example.com?subject=unsubscribe-{TOKEN}>"
)


def test_a_postfix_bounce_for_a_missing_mailbox_is_hard_and_names_its_recipient() -> None:
    report = read(samples.bounce("Ivan@Example.org", LIST_UNSUBSCRIBE))
    assert report.kind == InboundKind.BOUNCE and report.tokens == (TOKEN,)
    [failed] = report.failed
    assert failed.address == "ivan@example.org" and failed.status == "5.1.1"
    assert failed.diagnostic.startswith("smtp; 550 5.1.1 <Ivan@Example.org>: Recipient address")
    assert failed.mailbox_gone


def test_only_a_missing_mailbox_is_a_hard_bounce() -> None:
    def gone(status: str, reply: str, action: str = "failed") -> list[bool]:
        report = read(
            samples.bounce(
                "a@example.org", LIST_UNSUBSCRIBE, status=status, reply=reply, action=action
            )
        )
        return [f.mailbox_gone for f in report.failed]

    assert gone("5.2.2", "552 5.2.2 <{r}>: Mailbox full") == [False]
    assert gone("5.7.1", "554 5.7.1 <{r}>: Message rejected as spam by policy") == [False]
    assert gone("4.4.1", "451 4.4.1 connection timed out") == [False]
    assert gone("5.0.0", "550 <{r}>: no such user here") == [True]  # the text, no enhanced code
    assert gone("5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; not found") == [True]
    assert gone("5.1.2", "550 5.1.2 Host or domain name not found") == [True]
    assert gone("4.2.0", "450 4.2.0 <{r}>: greylisted", action="delayed") == []


def test_a_feedback_loop_complaint_carries_its_type_and_the_originals_token() -> None:
    report = read(samples.complaint(LIST_UNSUBSCRIBE))
    assert report.kind == InboundKind.COMPLAINT
    assert report.feedback_type == "abuse" and report.tokens == (TOKEN,)
    assert report.sender_domain == "corp.mail.ru"
    for sender, domain in (
        ("Mail.Ru FBL <FBL@Corp.Mail.RU>", "corp.mail.ru"),
        ("no address here", ""),
        ("<@mail.ru>", ""),
    ):
        assert read(samples.complaint(LIST_UNSUBSCRIBE, sender=sender)).sender_domain == domain


def test_a_mailto_unsubscribe_is_read_from_its_subject_even_encoded() -> None:
    plain = read(samples.mailto_unsubscribe(f"unsubscribe-{TOKEN}"))
    assert plain.kind == InboundKind.UNSUBSCRIBE and plain.tokens == (TOKEN,)
    encoded = Header(f"Отписка: unsubscribe-{TOKEN}", "utf-8").encode()
    assert read(samples.mailto_unsubscribe(encoded)).tokens == (TOKEN,)


def test_an_auto_reply_or_an_unrelated_message_is_other() -> None:
    auto = samples.mailto_unsubscribe(f"Re: unsubscribe-{TOKEN}").replace(
        b"MIME-Version", b"Auto-Submitted: auto-replied\nMIME-Version"
    )
    assert read(auto).kind == InboundKind.OTHER
    assert read(samples.mailto_unsubscribe("Question about the tariff")).kind == InboundKind.OTHER
    assert read(b"not a message at all").kind == InboundKind.OTHER


def test_a_bounce_without_our_headers_has_no_token() -> None:
    report = read(samples.bounce("a@example.org", "<mailto:list-admin@elsewhere.example>"))
    assert report.kind == InboundKind.BOUNCE and report.tokens == ()


def test_truncated_or_mangled_mail_is_read_without_an_error() -> None:
    """Whatever arrives is read: a report cut anywhere, or with its structure broken."""
    for sample in (
        samples.bounce("a@example.org", LIST_UNSUBSCRIBE),
        samples.complaint(LIST_UNSUBSCRIBE),
        samples.mailto_unsubscribe(f"unsubscribe-{TOKEN}"),
    ):
        whole = sample.replace(b"\r\n", b"\n")
        for cut in range(0, len(whole), 7):
            assert read(whole[:cut]).kind in set(InboundKind)
        mangled = whole.replace(b"\n\n", b"\n", 3).replace(b"--", b"-")
        assert read(mangled).kind in set(InboundKind)
        assert read(whole.replace(b"\n", b"\r\n")).tokens == read(whole).tokens

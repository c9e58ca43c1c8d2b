"""Which feedback reports count as complaints: the pure rules."""

from __future__ import annotations

from mailer.inbound.feedback_loops import CheckBy, judge, loop_of, parse_domains

LOOPS = parse_domains(" mail.ru, Yahoo.com. ,")  # as an operator may write it


def test_loop_domains_are_read_lower_cased_without_the_root_dot() -> None:
    assert parse_domains("mail.ru,yahoo.com") == LOOPS
    assert parse_domains("") == frozenset()


def test_a_domain_belongs_to_a_loop_by_itself_or_a_parent_never_by_a_suffix() -> None:
    assert loop_of("mail.ru", LOOPS) == "mail.ru"
    assert loop_of("FBL.corp.Mail.ru.", LOOPS) == "mail.ru"
    assert loop_of("evilmail.ru", LOOPS) is None
    assert loop_of("mail.ru.evil.example", LOOPS) is None


def test_by_dkim_only_a_loops_valid_signature_vouches() -> None:
    signed = judge(LOOPS, CheckBy.DKIM, "evil.example", ["corp.mail.ru"])
    assert signed.verified and signed.why == "signed by mail.ru"
    # A From at the loop proves nothing without its signature: anyone can write it.
    unsigned = judge(LOOPS, CheckBy.DKIM, "mail.ru", [])
    assert not unsigned.verified
    assert unsigned.why == "unverified: no valid DKIM signature of a feedback loop"
    assert not judge(LOOPS, CheckBy.DKIM, "mail.ru", ["evil.example"]).verified


def test_by_sender_the_from_domain_vouches() -> None:
    assert judge(LOOPS, CheckBy.SENDER, "fbl.mail.ru", []).verified
    refused = judge(LOOPS, CheckBy.SENDER, "evil.example", ["mail.ru"])
    assert not refused.verified and refused.why == "unverified: from evil.example, not a loop"
    assert judge(LOOPS, CheckBy.SENDER, "", []).why == "unverified: from no sender, not a loop"


def test_with_no_loop_configured_nothing_is_verified() -> None:
    verdict = judge(frozenset(), CheckBy.DKIM, "mail.ru", ["mail.ru"])
    assert not verdict.verified and "MAILER_FEEDBACK_LOOPS" in verdict.why

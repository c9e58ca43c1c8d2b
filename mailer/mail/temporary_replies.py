"""What a temporary (4xx) refusal of one recipient means, read from what the server says.

A 4xx at RCPT (or to the message) is either about that recipient — its mailbox is full or
busy, its server greylists this first contact, its domain cannot be reached just now — or
about the session: the server throttles us, is out of room, or closes the connection. The
first kind waits alone while the batch goes on; the second stops the batch and defers the
campaign (it counts towards the circuit breaker). Some replies say neither: those are
*unclear*, and the send path probes further recipients before it decides (activities/sending).

The rules read the RFC 3463 enhanced status code first (``4.2.2`` mailbox full, ``4.7.1``
policy...), then the reply's wording, in this order; the first that matches decides. Every
rule is tested with the real replies it was written for (tests/mail/test_temporary_replies).
Pure: no I/O, linear in the reply's length (which the SMTP client bounds already).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass


class TemporaryKind(enum.StrEnum):
    RECIPIENT = "recipient"  # this mailbox: it gets its own retry time, the batch goes on
    DOMAIN = "domain"  # this recipient's domain: its recipients in the campaign wait too
    THROTTLE = "throttle"  # the session: stop the batch, defer the campaign (breaker)
    UNCLEAR = "unclear"  # says neither: a run of these is probed before it is called a throttle


@dataclass(frozen=True)
class Verdict:
    kind: TemporaryKind
    why: str  # the rule that decided, for the operator: "greylisting", "mailbox full"...


@dataclass(frozen=True)
class Reply:
    """A 4xx reply broken into what the rules read."""

    code: int
    enhanced: tuple[int, int] | None  # (subject, detail) of a 4.x.y code; None without one
    text: str  # lower case, the enhanced code included


_ENHANCED = re.compile(r"\b4\.(\d{1,3})\.(\d{1,3})\b")
# Only the first 512 characters are read: the rules need the start of a reply, and a hostile
# server's kilobytes of text cost nothing more.
_READ_AT_MOST = 512


def parse_reply(code: int, text: str) -> Reply:
    text = text[:_READ_AT_MOST].lower()
    enhanced = _ENHANCED.search(text)
    subject_detail = (int(enhanced.group(1)), int(enhanced.group(2))) if enhanced else None
    return Reply(code, subject_detail, text)


def _words(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(patterns))


GREYLIST_WORDING = _words(
    r"gr[ae]y[- ]?list",  # postgrey, Postfix DEFER_IF_PERMIT, Exim greylistd, MailEnable
    r"try again in \d+ ?(s|sec|seconds|min|minutes)\b",  # "Greylisting, try again in 300 s"
    r"come back later",  # greylisting milters' wording ("please come back later")
)
# "This recipient receives too much": a rate, but the mailbox's, not ours.
RECIPIENT_RATE_WORDING = _words(
    # Not "for user/account": a provider's "limit exceeded for account" is our account.
    r"for (this )?(mailbox|recipient)\b",
    r"receiving mail at a rate",  # Gmail 450 4.2.1
)
THROTTLE_WORDING = _words(
    r"rate ?limit",
    r"too many (connections|messages|mails|emails|sessions|concurrent|recipients|errors)",
    r"slow down",
    r"too fast",
    r"frequency limit",
    r"limit (exceeded|reached)",
    r"exceeded.{0,30}limit",
    r"throttl",
    r"try again later, closing",  # Gmail 421 4.7.0 "Try again later, closing connection"
    r"temporarily deferred due to",  # Yahoo "[TS0x] Messages from ... temporarily deferred"
)
MAILBOX_WORDING = _words(
    r"mailbox (is )?full",
    r"over ?quota",
    r"quota (exceeded|full)",
    r"(mailbox|disk) (size )?(limit )?exceeded",
    r"mailbox size",
    r"insufficient storage for",
    r"mailbox (busy|temporarily|unavailable|locked)",
    r"user (busy|temporarily)",
    r"ящик (переполнен|заполнен)",
)
# A whole domain's quota (hosting): "451 domain.ru prohibited. Disk quota exceeded" (nic.ru).
DOMAIN_QUOTA_WORDING = re.compile(r"domain\b.{0,60}quota")
DOMAIN_WORDING = _words(
    r"domain not found",
    r"host not found",
    r"dns (temporary )?(failure|error|timeout|lookup)",
    r"temporary (dns|lookup) failure",
    r"unable to (resolve|route|deliver to domain)",
    r"no route to",
)


@dataclass(frozen=True)
class Rule:
    name: str
    applies: Callable[[Reply], bool]
    kind: TemporaryKind


def _subject(reply: Reply, *subjects: int) -> bool:
    return reply.enhanced is not None and reply.enhanced[0] in subjects


def _says(wording: re.Pattern[str]) -> Callable[[Reply], bool]:
    """A rule's test: the reply's text has ``wording``."""
    return lambda reply: wording.search(reply.text) is not None


def _code(reply: Reply, subject: int, detail: int) -> bool:
    return reply.enhanced == (subject, detail)


# Read in this order; the first rule that applies decides.
RULES: Sequence[Rule] = (
    # The server closes the session: nothing more goes through this connection.
    Rule("the server closes the session", lambda r: r.code == 421, TemporaryKind.THROTTLE),
    Rule(
        "greylisting",
        _says(GREYLIST_WORDING),
        TemporaryKind.RECIPIENT,
    ),
    Rule(
        "the recipient receives too much",
        _says(RECIPIENT_RATE_WORDING),
        TemporaryKind.RECIPIENT,
    ),
    Rule(
        "too many recipients",  # 452 4.5.3: one envelope too large (we send one at a time)
        lambda r: _code(r, 5, 3),
        TemporaryKind.THROTTLE,
    ),
    # RFC 3463 X.2.x: the mailbox's status (full, busy, disabled for now), whatever the
    # wording ("Mailbox size limit exceeded" is no throttle).
    Rule("the mailbox's state", lambda r: _subject(r, 2), TemporaryKind.RECIPIENT),
    Rule(
        "the domain's quota",
        _says(DOMAIN_QUOTA_WORDING),
        TemporaryKind.DOMAIN,
    ),
    Rule(
        "the mailbox's state",
        _says(MAILBOX_WORDING),
        TemporaryKind.RECIPIENT,
    ),
    Rule("rate limit", _says(THROTTLE_WORDING), TemporaryKind.THROTTLE),
    # X.1.x: the address. X.1.2 (and X.1.10) is the destination domain; X.1.7/X.1.8 are our
    # own sender address, refused for every recipient.
    Rule("our sender address", lambda r: _code(r, 1, 7) or _code(r, 1, 8), TemporaryKind.THROTTLE),
    Rule(
        "the recipient's domain",
        lambda r: _code(r, 1, 2) or _code(r, 1, 10),
        TemporaryKind.DOMAIN,
    ),
    Rule("the recipient's address", lambda r: _subject(r, 1), TemporaryKind.RECIPIENT),
    # X.4.5: the mail system is congested; other X.4.x: the route to that domain.
    Rule("congestion", lambda r: _code(r, 4, 5), TemporaryKind.THROTTLE),
    Rule("the route to the domain", lambda r: _subject(r, 4), TemporaryKind.DOMAIN),
    Rule(
        "the recipient's domain",
        _says(DOMAIN_WORDING),
        TemporaryKind.DOMAIN,
    ),
    # X.3.x: the receiving system itself (full, not accepting, misconfigured); X.3.0 ("other")
    # says nothing more than the bare code.
    Rule(
        "the receiving system",
        lambda r: _subject(r, 3) and not _code(r, 3, 0),
        TemporaryKind.THROTTLE,
    ),
    Rule("the session", lambda r: _subject(r, 5), TemporaryKind.THROTTLE),
    # 450 is "mailbox unavailable" (RFC 5321) unless a policy or system code says otherwise.
    Rule(
        "mailbox unavailable",
        lambda r: r.code == 450 and not _subject(r, 3, 7),
        TemporaryKind.RECIPIENT,
    ),
)


def read_temporary(code: int, text: str) -> Verdict:
    """What the 4xx ``code`` with its ``text`` (the reply after the code) says."""
    reply = parse_reply(code, text)
    for rule in RULES:
        if rule.applies(reply):
            return Verdict(rule.kind, rule.name)
    return Verdict(TemporaryKind.UNCLEAR, "the reply does not say")


def retry_delay_minutes(attempts: int, schedule: Sequence[float]) -> float:
    """Minutes a recipient refused for the ``attempts``-th time waits: the schedule's step for
    that try, its last step after that (5, 15, 30, 60, 60...)."""
    if not schedule:
        raise ValueError("the retry schedule is empty")
    return schedule[min(max(attempts, 1), len(schedule)) - 1]

"""Whether a feedback report is a mailbox provider's complaint, or anyone's (pure rules).

A complaint (ARF, RFC 5965) names its recipient by the token in the returned message, so
anyone holding one copy of a message could send one and inflate the campaign's complaint
rate — the number mail.ru's and Gmail's postmasters judge a sender by. So a report counts as
a complaint only when a configured feedback loop (``MAILER_FEEDBACK_LOOPS``: the providers'
domains) vouches for it:

- ``dkim`` (the default): a DKIM signature of the loop's domain (or a subdomain) verifies —
  the providers sign their reports;
- ``sender``: the report's ``From`` is at the loop's domain — only behind an MTA that
  already rejects mail failing DMARC, since a ``From`` alone is anyone's to write.

Anything else is recorded as an unverified complaint: the address is still suppressed (the
same person could have unsubscribed with the message's link), but the complaint is not
counted.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class CheckBy(enum.StrEnum):
    """``MAILER_FEEDBACK_LOOP_CHECK``: what proves a report came from a feedback loop."""

    DKIM = "dkim"
    SENDER = "sender"


@dataclass(frozen=True)
class Verdict:
    """Whether a report counts as a complaint, and why (for the suppression's note)."""

    verified: bool
    why: str


def parse_domains(text: str) -> frozenset[str]:
    """``"mail.ru, Yahoo.com."`` → ``{"mail.ru", "yahoo.com"}``."""
    return frozenset(d.strip().lower().rstrip(".") for d in text.split(",") if d.strip())


def loop_of(domain: str, loops: frozenset[str]) -> str | None:
    """The configured loop ``domain`` belongs to (itself or a parent), if any:
    ``fbl.mail.ru`` belongs to ``mail.ru``; ``evilmail.ru`` does not."""
    domain = domain.lower().rstrip(".")
    for loop in loops:
        if domain == loop or domain.endswith("." + loop):
            return loop
    return None


def judge(
    loops: frozenset[str], check: CheckBy, sender_domain: str, signed_by: Iterable[str]
) -> Verdict:
    """Whether a report from ``sender_domain`` (its ``From``), carrying valid DKIM signatures
    of ``signed_by``, is vouched for by one of ``loops``."""
    if not loops:
        return Verdict(False, "unverified: no MAILER_FEEDBACK_LOOPS configured")
    if check == CheckBy.SENDER:
        loop = loop_of(sender_domain, loops)
        if loop is not None:
            return Verdict(True, f"from {loop}")
        return Verdict(False, f"unverified: from {sender_domain or 'no sender'}, not a loop")
    for domain in signed_by:
        loop = loop_of(domain, loops)
        if loop is not None:
            return Verdict(True, f"signed by {loop}")
    return Verdict(False, "unverified: no valid DKIM signature of a feedback loop")

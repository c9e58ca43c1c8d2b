"""What mailer does with a received message: the suppression list, and nothing else.

The recipient is the one named by the first token that verifies under
``MAILER_UNSUBSCRIBE_SECRET``, so a forged or foreign message changes nothing. A bounce
suppresses only when it is hard (the mailbox does not exist) and reports the failure of that
same address: a report about another address (a forward that failed further on, say) is
not ours to act on. A complaint counts as one only when a feedback loop vouches for it
(:mod:`mailer.inbound.feedback_loops`); any other is suppressed as ``unverified_complaint``,
and a vouched one arriving later upgrades it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from mailer.inbound.feedback_loops import Verdict
from mailer.inbound.reports import FailedRecipient, InboundKind, InboundMessage
from mailer.mail.addresses import UnsendableAddress, for_transport
from mailer.mail.unsubscribe_tokens import BadToken, Target, verify
from mailer.operations.unsubscribes import Subscriber, look_up, suppress, upgrade
from workflows.states import SuppressionReason

# Long enough to recognise the reply, short enough for one line of `mailer suppress list`.
_NOTE_CHARS = 200


@dataclass(frozen=True)
class Handled:
    """The outcome, for the SMTP reply and the log (no address in it)."""

    action: str  # a suppression reason, or "ignored"
    detail: str
    campaign_id: uuid.UUID | None = None

    @property
    def summary(self) -> str:
        where = f" (campaign {self.campaign_id})" if self.campaign_id else ""
        return f"{self.action}: {self.detail}{where}"


def _target(secret: str, tokens: tuple[str, ...]) -> Target | None:
    for token in tokens:
        try:
            return verify(secret, token)
        except BadToken:
            continue
    return None


def handle(
    session: Session, secret: str, message: InboundMessage, vouch: Callable[[], Verdict]
) -> Handled:
    """Act on ``message``. ``vouch`` judges a complaint's origin; it is called only for a
    complaint whose token verifies, before the database is read (it may wait on DNS)."""
    if message.kind == InboundKind.OTHER:
        return Handled("ignored", "not an unsubscribe, a delivery report or a feedback report")
    target = _target(secret, message.tokens)
    if target is None:
        return Handled("ignored", f"a {message.kind.value} with no valid unsubscribe token")
    verdict = vouch() if message.kind == InboundKind.COMPLAINT else None

    def ignored(why: str) -> Handled:
        return Handled("ignored", why, target.campaign_id)

    found = look_up(session, target)
    if not found.address:
        return ignored("the token's recipient no longer exists")
    if message.kind == InboundKind.UNSUBSCRIBE:
        reason, detail, note = SuppressionReason.UNSUBSCRIBED, "mailto unsubscribe", ""
    elif verdict is not None:
        reason, detail, note = _complaint(message, verdict)
    else:
        failure = _hard_failure_of(found, message)
        if isinstance(failure, str):
            return ignored(failure)
        reason, detail = SuppressionReason.HARD_BOUNCE, "delivery report"
        note = f"{failure.status} {failure.diagnostic}"
    full_note = f"{detail}: {note}"[:_NOTE_CHARS] if note else detail
    if found.suppressed_as == SuppressionReason.UNVERIFIED_COMPLAINT and reason == (
        SuppressionReason.COMPLAINT
    ):
        upgrade(session, found, reason, full_note)
        return Handled(reason.value, detail, target.campaign_id)
    if found.suppressed_as:
        return ignored(f"already suppressed ({found.suppressed_as})")
    suppress(session, target, reason, full_note, found=found)
    return Handled(reason.value, detail, target.campaign_id)


def _complaint(message: InboundMessage, verdict: Verdict) -> tuple[SuppressionReason, str, str]:
    feedback_type = message.feedback_type or "unspecified"
    if verdict.verified:
        return SuppressionReason.COMPLAINT, "feedback report", f"{feedback_type}, {verdict.why}"
    return (
        SuppressionReason.UNVERIFIED_COMPLAINT,
        "feedback report",
        f"{feedback_type}, {verdict.why}",
    )


def _hard_failure_of(found: Subscriber, message: InboundMessage) -> FailedRecipient | str:
    """The report's hard failure of the token's own address, or why the report is ignored."""
    hard = [failure for failure in message.failed if failure.mailbox_gone]
    if not hard:
        statuses = ", ".join(f.status for f in message.failed) or "no failed recipient"
        return f"not a hard bounce ({statuses})"
    address = _comparable(found.address)
    for failure in hard:
        if _comparable(failure.address) == address:
            return failure
    return "a hard bounce for an address other than the token's"


def _comparable(address: str) -> str:
    """An address as a report names it: the domain as sent (A-labels), case folded —
    ``olga@пример.рф`` comes back as ``olga@xn--e1afmkfd.xn--p1ai``."""
    try:
        return for_transport(address, server_smtputf8=True).address.lower()
    except UnsendableAddress:
        return address.lower()

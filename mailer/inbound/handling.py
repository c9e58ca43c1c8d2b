"""What mailer does with a received message: the suppression list, and nothing else.

The recipient is the one named by the first token that verifies under
``MAILER_UNSUBSCRIBE_SECRET``, so a forged or foreign message changes nothing. A bounce
suppresses only when it is hard (the mailbox does not exist) and reports the failure of that
same address: a report about another address (a forward that failed further on, say) is
not ours to act on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from mailer.inbound.reports import FailedRecipient, InboundKind, InboundMessage
from mailer.mail.addresses import UnsendableAddress, for_transport
from mailer.mail.unsubscribe_tokens import BadToken, Target, verify
from mailer.operations.unsubscribes import Subscriber, look_up, suppress
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


def handle(session: Session, secret: str, message: InboundMessage) -> Handled:
    if message.kind == InboundKind.OTHER:
        return Handled("ignored", "not an unsubscribe, a delivery report or a feedback report")
    target = _target(secret, message.tokens)
    if target is None:
        return Handled("ignored", f"a {message.kind.value} with no valid unsubscribe token")

    def ignored(why: str) -> Handled:
        return Handled("ignored", why, target.campaign_id)

    found = look_up(session, target)
    if not found.address:
        return ignored("the token's recipient no longer exists")
    if found.suppressed_as:
        return ignored(f"already suppressed ({found.suppressed_as})")
    if message.kind == InboundKind.UNSUBSCRIBE:
        reason, detail, note = SuppressionReason.UNSUBSCRIBED, "mailto unsubscribe", ""
    elif message.kind == InboundKind.COMPLAINT:
        reason, detail = SuppressionReason.COMPLAINT, "feedback report"
        note = message.feedback_type or "unspecified"
    else:
        failure = _hard_failure_of(found, message)
        if isinstance(failure, str):
            return ignored(failure)
        reason, detail = SuppressionReason.HARD_BOUNCE, "delivery report"
        note = f"{failure.status} {failure.diagnostic}"
    full_note = f"{detail}: {note}"[:_NOTE_CHARS] if note else detail
    suppress(session, target, reason, full_note, found=found)
    return Handled(reason.value, detail, target.campaign_id)


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

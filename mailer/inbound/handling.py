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

from activities.addresses import UnsendableAddress, for_transport
from mailer.inbound.reports import InboundKind, InboundMessage
from mailer.unsubscribe import BadToken, Target, verify
from mailer.unsubscribing import look_up, suppress
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
    if message.kind == InboundKind.UNSUBSCRIBE:
        return _suppressed(session, target, SuppressionReason.UNSUBSCRIBED, "mailto unsubscribe")
    if message.kind == InboundKind.COMPLAINT:
        note = f"feedback report: {message.feedback_type or 'unspecified'}"
        return _suppressed(session, target, SuppressionReason.COMPLAINT, note)
    return _bounce(session, target, message)


def _bounce(session: Session, target: Target, message: InboundMessage) -> Handled:
    hard = [failure for failure in message.failed if failure.mailbox_gone]
    if not hard:
        statuses = ", ".join(f.status for f in message.failed) or "no failed recipient"
        return Handled("ignored", f"not a hard bounce ({statuses})", target.campaign_id)
    address = _comparable(look_up(session, target).address)
    matching = [failure for failure in hard if _comparable(failure.address) == address]
    if not matching:
        return Handled(
            "ignored", "a hard bounce for an address other than the token's", target.campaign_id
        )
    failure = matching[0]
    note = f"delivery report: {failure.status} {failure.diagnostic}"[:_NOTE_CHARS]
    return _suppressed(session, target, SuppressionReason.HARD_BOUNCE, note)


def _comparable(address: str) -> str:
    """An address as a report names it: the domain as sent (A-labels), case folded —
    ``olga@пример.рф`` comes back as ``olga@xn--e1afmkfd.xn--p1ai``."""
    try:
        return for_transport(address, server_smtputf8=True).address.lower()
    except UnsendableAddress:
        return address.lower()


def _suppressed(session: Session, target: Target, reason: SuppressionReason, note: str) -> Handled:
    before = look_up(session, target)
    if not before.address:
        return Handled("ignored", "the token's recipient no longer exists", target.campaign_id)
    if before.suppressed_as:
        detail = f"already suppressed ({before.suppressed_as})"
        return Handled("ignored", detail, target.campaign_id)
    suppress(session, target, reason, note)
    return Handled(reason.value, note.split(":")[0], target.campaign_id)

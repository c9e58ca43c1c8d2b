"""What a token's recipient opting out does: their address goes on the suppression list.

Shared by the one-click links (``mailer web``) and the mail it receives (``mailer.inbound``:
``mailto:`` unsubscribes, bounces, complaints), which all name the recipient by the token
of the message they answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import CampaignRecipient, ProofEmail, Suppression
from mailer.mail.unsubscribe_tokens import Target, TargetKind
from mailer.operations import suppression
from workflows.states import SuppressionReason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Subscriber:
    """The address a token points at, and whether it is already suppressed."""

    address: str  # lower-cased; '' when its row is gone (the campaign was deleted)
    suppressed_as: str  # the suppression reason, '' if not suppressed

    @property
    def masked(self) -> str:
        """``a***@example.com``: enough for its owner to recognise, not to harvest."""
        local, _, domain = self.address.partition("@")
        return f"{local[:1]}***@{domain}" if domain else ""


def _address(session: Session, target: Target) -> str:
    if target.kind == TargetKind.RECIPIENT:
        query = select(CampaignRecipient.email).where(
            CampaignRecipient.id == target.row_id,
            CampaignRecipient.campaign_id == target.campaign_id,
        )
    else:
        query = select(ProofEmail.email).where(
            ProofEmail.id == target.row_id, ProofEmail.campaign_id == target.campaign_id
        )
    found = session.scalar(query)
    return found.lower() if found else ""


def look_up(session: Session, target: Target) -> Subscriber:
    address = _address(session, target)
    reason = (
        session.scalar(select(Suppression.reason).where(Suppression.address == address))
        if address
        else None
    )
    return Subscriber(address, reason or "")


def suppress(
    session: Session,
    target: Target,
    reason: SuppressionReason,
    note: str,
    *,
    found: Subscriber | None = None,
) -> Subscriber:
    """Suppress the token's address for ``reason`` (idempotent: an address already on the
    list keeps its first reason, and a second time changes nothing). ``found``: the
    target's :func:`look_up`, when the caller already made it."""
    found = found or look_up(session, target)
    if found.address and not found.suppressed_as:
        suppression.add(session, [found.address], reason, campaign_id=target.campaign_id, note=note)
        log.info("suppressed a recipient of campaign %s: %s", target.campaign_id, reason.value)
        return Subscriber(found.address, reason.value)
    return found


def unsubscribe(session: Session, target: Target) -> Subscriber:
    """The one-click link's unsubscribe."""
    return suppress(session, target, SuppressionReason.UNSUBSCRIBED, "one-click unsubscribe")


def upgrade(session: Session, found: Subscriber, reason: SuppressionReason, note: str) -> None:
    """A suppression recorded for an unverified complaint becomes ``reason`` (a feedback
    loop vouched for the complaint since): counted from now on, first date kept."""
    session.execute(
        update(Suppression)
        .where(
            Suppression.address == found.address,
            Suppression.reason == SuppressionReason.UNVERIFIED_COMPLAINT.value,
        )
        .values(reason=reason.value, note=note)
    )
    log.info("a suppression's complaint was verified: now %s", reason.value)

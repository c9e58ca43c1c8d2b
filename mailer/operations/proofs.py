"""``mailer test-email``'s request: checked here, sent by the worker.

The request row holds the address (workflows carry ids only); the workflow
``test-email-<campaign>-<request id>`` sends it and writes the outcome back to the row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.orm import Session

from db.models import Campaign, ProofEmail
from mailer.core.errors import InputError
from mailer.operations.authoring.create import find_user


@dataclass(frozen=True)
class ProofEmailRequest:
    request_id: int
    campaign_id: uuid.UUID
    address: str
    requested_by: str  # the username whose hourly throttle it counts against


def checked_address(address: str) -> str:
    """The ``--to`` address in canonical form, or an :class:`InputError` naming it."""
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InputError([f"--to: {address!r} is not a valid address: {exc}"]) from None


def request_proof_email(
    session: Session, campaign_id: uuid.UUID, address: str, as_user: str | None
) -> ProofEmailRequest:
    """Write the request (nothing is written if the campaign, user or address is wrong)."""
    to = checked_address(address)
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise InputError([f"CAMPAIGN_ID: no campaign {campaign_id}"])
    if as_user is not None:
        user = find_user(session, as_user)
        if user is None:
            raise InputError([f"--as: no user {as_user!r} (see `mailer user add`)"])
    elif campaign.created_by is not None:
        user = campaign.created_by
    else:
        raise InputError(
            ["--as: the campaign has no creator; name the user the test email counts against"]
        )
    request = ProofEmail(campaign_id=campaign.id, email=to, requested_by_id=user.id)
    session.add(request)
    session.flush()
    return ProofEmailRequest(request.id, campaign.id, to, user.username)

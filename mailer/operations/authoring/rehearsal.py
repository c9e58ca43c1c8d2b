"""Build every recipient's message once at ``create``, exactly as sending will.

A template that touches ``__class__``, a ``range(10**9)``, a line break from a CSV value
that lands in a header: each passes a syntax check and fails at send time, for every
recipient it touches, for good. Building each message here (the same
:func:`mailer.mail.messages.build_message` the send path calls) finds them before anything
is written. Whether a UTF-8 local part can go out depends on the server, so that is left
to send time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from mailer.mail.messages import UnsendableMessage, build_message
from mailer.mail.views import CampaignView, RecipientView
from mailer.operations.authoring.recipients import Recipient

# Stands in for the account's sender when neither the campaign nor the account names one.
PLACEHOLDER_SENDER = "sender@example.invalid"


@dataclass(frozen=True)
class Unsendable:
    recipient: Recipient
    reason: str


def rehearse(
    recipients: list[Recipient],
    *,
    subject: str,
    html_body: str,
    text_body: str,
    from_email: str,
    from_name: str,
) -> list[Unsendable]:
    """The recipients whose message cannot be built, with the reason for each."""
    campaign = CampaignView(
        id=uuid.uuid4(),
        created_by_id=None,
        subject=subject,
        html_body=html_body,
        text_body=text_body,
        from_email=from_email or PLACEHOLDER_SENDER,
        from_name=from_name,
    )
    now = datetime.now(UTC)
    found = []
    for index, recipient in enumerate(recipients):
        view = RecipientView(index, recipient.email, recipient.name, recipient.variables)
        try:
            build_message(campaign, view, now, server_smtputf8=True)
        except UnsendableMessage as exc:
            found.append(Unsendable(recipient, str(exc)))
    return found

"""Building one recipient's message: rendered templates, safe headers, a stable Message-ID."""

from __future__ import annotations

import uuid
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from activities.ledger import CampaignView, RecipientView
from mailer.authoring.templates import render


def message_id_for(campaign_id: uuid.UUID, recipient_id: int, from_email: str) -> str:
    """Derived from (campaign, recipient) only, so a resend after a crash repeats it and
    receivers can de-duplicate."""
    domain = from_email.rpartition("@")[2] or "mailer.invalid"
    return f"<{campaign_id.hex}.{recipient_id}@{domain}>"


def build_message(campaign: CampaignView, recipient: RecipientView, now: datetime) -> EmailMessage:
    """The recipient's message: text and/or HTML alternatives, rendered for them."""
    context: dict[str, object] = dict(recipient.variables)
    context.setdefault("name", recipient.name)
    context["email"] = recipient.email
    message = EmailMessage()
    message["Subject"] = render(campaign.subject, context, html=False)
    message["From"] = formataddr((campaign.from_name, campaign.from_email))
    message["To"] = formataddr((recipient.name, recipient.email))
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id_for(campaign.id, recipient.id, campaign.from_email)
    text_body = render(campaign.text_body, context, html=False) if campaign.text_body else ""
    html_body = render(campaign.html_body, context, html=True) if campaign.html_body else ""
    if text_body:
        message.set_content(text_body)
        if html_body:
            message.add_alternative(html_body, subtype="html")
    else:
        message.set_content(html_body, subtype="html")
    return message

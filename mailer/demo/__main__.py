"""``make demo``: bring up the embedded stack and create the demo campaign.

The demo account points at the stack's SMTP sink, so every message lands as a ``.eml``
file under ``.data/outbox`` instead of leaving the machine.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sqlalchemy import select

from db.engine import session_scope
from db.models import User
from mailer.accounts import AccountChanges, add_user, set_account
from mailer.authoring.create import CampaignDraft, create_campaign
from mailer.errors import MailerError
from mailer.settings import load_settings
from mailer.stack import embedded
from mailer.stack.config import StackSettings

DEMO_DIR = Path(__file__).parent
DEMO_USER = "demo"


def prepare(stack: StackSettings) -> str:
    """Stack up, demo user and account; returns the new demo campaign's id."""
    print("Starting the embedded stack (no Docker, nothing leaves this machine):", flush=True)
    embedded.up(stack, on_part=lambda part: print(f"  {part.name:<12} {part.address}", flush=True))
    os.environ.update(embedded.connection_settings(stack))
    settings = load_settings()
    with session_scope(settings.sqlalchemy_url) as session:
        if session.scalar(select(User).where(User.username == DEMO_USER)) is None:
            add_user(session, DEMO_USER)
        set_account(
            session,
            AccountChanges(
                smtp_host=stack.host,
                smtp_port=stack.smtp_port,
                smtp_tls="none",
                from_email="news@example.com",
                from_name="Demo CRM",
                smtp_bz_api_key=stack.smtpbz_api_key,
            ),
        )
        created = create_campaign(
            session,
            CampaignDraft(
                name="Demo: new tariffs",
                subject="{{ name }}, новые тарифы для {{ company }}",
                recipients_path=DEMO_DIR / "recipients.csv",
                created_by=DEMO_USER,
                html_path=DEMO_DIR / "message.html",
                text_path=DEMO_DIR / "message.txt",
            ),
            max_recipients=settings.max_campaign_recipients,
        )
    print(f"Demo campaign {created.campaign_id}: {created.recipients} recipients", flush=True)
    return str(created.campaign_id)


def main() -> int:
    try:
        campaign_id = prepare(StackSettings())
    except MailerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"See it with: .venv/bin/mailer status {campaign_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

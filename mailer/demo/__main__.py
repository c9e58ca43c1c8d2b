"""``make demo``: the embedded stack, a worker, and a demo campaign sent while you watch.

The demo account points at the stack's SMTP sink, so every message lands as a ``.eml``
file under ``.data/outbox`` instead of leaving the machine. So that it sends whatever the
time of day, the demo's worker runs with working hours widened to the whole day and a
higher hourly rate; it says so on screen.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from email.parser import BytesHeaderParser
from pathlib import Path

from sqlalchemy import select

from db.engine import session_scope
from db.models import User
from mailer.core.errors import MailerError
from mailer.core.process_exit import exit_process
from mailer.core.settings import load_settings
from mailer.operations import control
from mailer.operations.accounts import AccountChanges, add_user, set_account
from mailer.operations.authoring.create import CampaignDraft, create_campaign
from mailer.operations.watch import watch_campaign
from mailer.stack import embedded
from mailer.stack.config import StackSettings
from workflows.campaign import workflow_id_for

DEMO_DIR = Path(__file__).parent
DEMO_USER = "demo"
# The demo worker's overrides of the seed's limits (printed on screen).
DEMO_WORKER_ENV = {
    "MAILER_WORKING_HOURS_START": "0",
    "MAILER_WORKING_HOURS_END": "24",
    "MAILER_RATE_PER_HOUR": "6000",
    "MAILER_SEND_BATCH_SIZE": "25",
}


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


async def send(stack: StackSettings, campaign_id: str) -> None:
    settings = load_settings()
    worker = embedded.start_worker(stack, DEMO_WORKER_ENV)
    print(
        f"Worker {'started' if worker.started_now else 'already running'} (pid {worker.pid}, "
        f"log {stack.log_dir / 'worker.log'}).",
        flush=True,
    )
    print(
        "Demo settings: working hours widened to 00:00-24:00 and 6000 emails/hour so the demo "
        "sends now (production defaults: 09:00-18:00 Europe/Moscow, 100 emails/hour).",
        flush=True,
    )
    progress = await control.start(settings, uuid.UUID(campaign_id))
    print(f"Campaign started: {progress.state}.", flush=True)
    print(
        f"Web UI: {settings.temporal_ui_url}/namespaces/{settings.temporal_namespace}"
        f"/workflows/{workflow_id_for(campaign_id)}",
        flush=True,
    )
    final = await watch_campaign(settings, uuid.UUID(campaign_id), interval=0.5)
    print(f"Campaign {campaign_id}: {final}")
    print(
        f"Messages in the sink: {len(list(stack.outbox.glob('*.eml')))} .eml files "
        f"in {stack.outbox}"
    )
    link = _an_unsubscribe_link(stack, campaign_id)
    if link:
        print(f"Unsubscribe as a recipient would (open it in a browser): {link}")
    print(
        "Try: .venv/bin/mailer list --all    ·    diagnose: make doctor    ·    "
        f"a test email: .venv/bin/mailer test-email {campaign_id} --to you@example.org    ·    "
        "stop everything: make down"
    )


def _an_unsubscribe_link(stack: StackSettings, campaign_id: str) -> str:
    """The List-Unsubscribe URL of one of the campaign's saved messages ('' if none)."""
    marker = uuid.UUID(campaign_id).hex
    parser = BytesHeaderParser()
    for path in sorted(stack.outbox.glob("*.eml")):
        with path.open("rb") as file:
            headers = parser.parse(file)
        if marker in (headers["Message-ID"] or "") and headers["List-Unsubscribe"]:
            return str(headers["List-Unsubscribe"]).split(",")[0].strip().strip("<>")
    return ""


def main() -> int:
    stack = StackSettings()
    try:
        campaign_id = prepare(stack)
        asyncio.run(send(stack, campaign_id))
    except MailerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    exit_process(main())

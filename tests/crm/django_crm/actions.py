"""What the CRM does with its ORM, as commands (``python -m tests.crm.django_crm.actions``):

- ``migrate``: Django's own migrations create the seed's tables;
- ``seed SMTP_PORT RECIPIENTS``: a user, the mail account (pointing at a test sink), the
  quota and a ``ready`` campaign; prints the campaign's id;
- ``queue CAMPAIGN``: queue it the way the old engine expected (a ``pending`` queue row).
"""

from __future__ import annotations

import os
import sys

import django


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.crm.django_crm.settings")
    django.setup()
    command, *args = argv
    if command == "migrate":
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
    elif command == "seed":
        print(_seed(int(args[0]), int(args[1])))
    elif command == "queue":
        from tests.crm.django_crm.campaigns.models import CampaignQueue

        CampaignQueue.objects.create(campaign_id=args[0])
    else:
        raise SystemExit(f"unknown command {command!r}")


def _seed(smtp_port: int, recipients: int) -> str:
    from tests.crm.django_crm.accounts.models import User
    from tests.crm.django_crm.campaigns.models import (
        Campaign,
        CampaignRecipient,
        GlobalMailAccount,
        SmtpBzQuota,
    )

    user = User.objects.create_user(username="olga", password="x")
    GlobalMailAccount.objects.create(
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_tls="none",
        from_email="news@crm.example",
        from_name="CRM",
    )
    SmtpBzQuota.objects.create(emails_available=1000, emails_limit=1000)
    campaign = Campaign.objects.create(
        name="Декабрьская рассылка",
        status="ready",
        subject="Hello {{ name }}",
        text_body="Hi {{ name }}",
        created_by=user,
        total_recipients=recipients,
    )
    CampaignRecipient.objects.bulk_create(
        CampaignRecipient(campaign=campaign, email=f"client{i}@example.com", name=f"Client {i}")
        for i in range(recipients)
    )
    return str(campaign.id)


if __name__ == "__main__":
    main(sys.argv[1:])

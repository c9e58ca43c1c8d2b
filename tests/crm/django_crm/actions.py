"""What the CRM does with its ORM, as commands (``python -m tests.crm.django_crm.actions``):

- ``migrate``: Django's own migrations create the seed's tables;
- ``seed SMTP_PORT RECIPIENTS``: a user, the mail account (pointing at a test sink), the
  quota and a ``ready`` campaign; prints the campaign's id;
- ``queue CAMPAIGN``: queue it the way the old engine expected (a ``pending`` queue row);
- ``midflight SMTP_PORT``: what the Celery engine leaves behind mid-flight (see
  :func:`_midflight`); prints ``label=id`` lines;
- ``set-status CAMPAIGN STATUS``: the CRM's UI changing a campaign's status.
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
    elif command == "midflight":
        for label, campaign_id in _midflight(int(args[0])).items():
            print(f"{label}={campaign_id}")
    elif command == "set-status":
        from tests.crm.django_crm.campaigns.models import Campaign

        campaign = Campaign.objects.get(id=args[0])
        campaign.status = args[1]
        campaign.save(update_fields=["status", "updated_at"])
    else:
        raise SystemExit(f"unknown command {command!r}")


def _seed(smtp_port: int, recipients: int) -> str:
    from tests.crm.django_crm.campaigns.models import Campaign, CampaignRecipient

    _seed_account(smtp_port)
    user = _user()
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


def _midflight(smtp_port: int) -> dict[str, str]:
    """Three campaigns as the Celery engine leaves them: ``deferred`` (sending, 3 of 10 sent
    with their send-log rows, ``rate_per_hour`` until 20 s from now, 7 transient errors),
    ``stuck`` (sending, 2 sent, 1 failed, 3 pending, its queue row ``processing`` for 20
    minutes) and ``paused`` (the breaker's pause: 10 errors, 5 pending)."""
    from datetime import timedelta

    from django.utils import timezone

    from tests.crm.django_crm.campaigns.models import Campaign, CampaignQueue

    _seed_account(smtp_port)
    user = _user()
    now = timezone.now()
    shapes = {
        "deferred": (
            "sending",
            ["sent"] * 3 + ["pending"] * 7,
            "pending",
            "rate_per_hour",
            now + timedelta(seconds=20),
            7,
            "451 4.7.1 try later",
        ),
        "stuck": (
            "sending",
            ["sent"] * 2 + ["failed"] + ["pending"] * 3,
            "processing",
            "",
            None,
            0,
            "",
        ),
        "paused": (
            "paused",
            ["pending"] * 5,
            "pending",
            "transient_error",
            None,
            10,
            "circuit breaker: 10 consecutive transient errors (last: 421)",
        ),
    }
    ids = {}
    for label, (status, states, queue, reason, until, errors, last_error) in shapes.items():
        campaign = Campaign.objects.create(
            name=f"celery {label}",
            status=status,
            subject="Hello {{ name }}",
            text_body="Hi {{ name }}",
            created_by=user,
            total_recipients=len(states),
            started_at=now - timedelta(hours=1),
        )
        _recipients(campaign, label, states)
        CampaignQueue.objects.create(
            campaign=campaign,
            status=queue,
            defer_reason=reason,
            deferred_until=until,
            consecutive_transient_errors=errors,
            last_error=last_error,
            started_at=now - timedelta(minutes=20) if queue == "processing" else None,
        )
        ids[label] = str(campaign.id)
    return ids


def _recipients(campaign: object, label: str, states: list[str]) -> None:
    from tests.crm.django_crm.campaigns.models import CampaignRecipient, SendLog

    for i, state in enumerate(states):
        recipient = CampaignRecipient.objects.create(
            campaign=campaign, email=f"{label}{i}@example.com", name=f"Client {i}", status=state
        )
        if state != "pending":
            SendLog.objects.create(
                campaign=campaign,
                recipient=recipient,
                email=recipient.email,
                status=state,
                smtp_code=550 if state == "failed" else None,
            )


def _user() -> object:
    from tests.crm.django_crm.accounts.models import User

    return User.objects.get_or_create(username="olga")[0]


def _seed_account(smtp_port: int) -> None:
    from tests.crm.django_crm.campaigns.models import GlobalMailAccount, SmtpBzQuota

    GlobalMailAccount.objects.create(
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_tls="none",
        from_email="news@crm.example",
        from_name="CRM",
    )
    SmtpBzQuota.objects.create(emails_available=1000, emails_limit=1000)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Rows for throwaway stacks (tests, benchmarks, the fault rig): users, the account pointing at
a sink, the quota, campaigns of generated recipients, plain SQL on a database by URL, and the
CRM's writes on a connection of its own."""

from __future__ import annotations

import uuid

import psycopg
from sqlalchemy import insert, text

from activities.sent_marks import libpq_conninfo
from db.engine import get_engine, session_scope
from db.models import Campaign, CampaignRecipient, CampaignStatus, GlobalMailAccount, User


def add_user(url: str, username: str | None = None) -> int:
    with session_scope(url) as session:
        user = User(username=username or f"user-{uuid.uuid4().hex[:8]}")
        session.add(user)
        session.flush()
        return user.id


def set_account(
    url: str, *, smtp_port: int, daily_limit: int = 0, api_key: str = "test-key", **extra: object
) -> None:
    with session_scope(url) as session:
        account = session.get(GlobalMailAccount, 1) or GlobalMailAccount(id=1)
        account.smtp_host = "127.0.0.1"
        account.smtp_port = smtp_port
        account.smtp_tls = "none"
        account.from_email = "news@example.com"
        account.from_name = "Test CRM"
        account.per_user_daily_limit = daily_limit
        account.smtp_bz_api_key = api_key
        for key, value in extra.items():
            setattr(account, key, value)
        session.merge(account)


def set_quota(url: str, available: int) -> None:
    with get_engine(url).begin() as conn:
        conn.execute(text("UPDATE mailer_smtpbzquota SET emails_available = :n"), {"n": available})


def add_campaign(
    url: str,
    user_id: int,
    recipients: int | list[str],
    *,
    name: str = "test campaign",
    subject: str = "Hello {{ name }}",
) -> str:
    """A ready campaign; ``recipients`` is a count (distinct addresses) or addresses."""
    tag = uuid.uuid4().hex[:6]
    emails = (
        [f"r{i:05d}.{tag}@example.com" for i in range(recipients)]
        if isinstance(recipients, int)
        else recipients
    )
    campaign_id = uuid.uuid4()
    with session_scope(url) as session:
        session.add(
            Campaign(
                id=campaign_id,
                name=name,
                status=CampaignStatus.READY.value,
                subject=subject,
                text_body="Hi {{ name }}, this is {{ email }}.\n",
                html_body="<p>Hi {{ name }}</p>",
                created_by_id=user_id,
                total_recipients=len(emails),
            )
        )
        session.flush()
        session.execute(
            insert(CampaignRecipient),
            [
                {
                    "campaign_id": campaign_id,
                    "email": e,
                    "name": f"N{i}",
                    "variables": {"name": f"N{i}"},
                }
                for i, e in enumerate(emails)
            ],
        )
    return str(campaign_id)


def sql_rows(url: str, query: str, **params: object) -> list[tuple[object, ...]]:
    with get_engine(url).connect() as conn:
        return [tuple(row) for row in conn.execute(text(query), params).all()]


def sql_execute(url: str, statement: str, **params: object) -> None:
    with get_engine(url).begin() as conn:
        conn.execute(text(statement), params)


def connection_as(
    url: str, application_name: str, *, autocommit: bool = True
) -> psycopg.Connection[tuple[object, ...]]:
    """A connection that names itself ``application_name``: ``crm`` for the CRM's writes
    (migration 0006's trigger takes every writer not named ``mailer…`` as a request)."""
    return psycopg.connect(
        libpq_conninfo(url), application_name=application_name, autocommit=autocommit
    )


def queue_as_crm(
    url: str,
    campaign_id: str,
    *,
    connection: psycopg.Connection[tuple[object, ...]] | None = None,
    **row: object,
) -> None:
    """The CRM's queue row for a campaign, every column given (Django creates no database
    defaults): ``pending`` unless ``row`` says otherwise. On ``connection`` (the caller's
    transaction, committed by the caller) when given, else on a connection of the CRM's."""
    values: dict[str, object] = {
        "status": "pending",
        "defer_reason": "",
        "deferred_until": None,
        "consecutive_transient_errors": 0,
        "last_error": "",
        "started_at": None,
    }
    values.update(row)
    statement = (
        "INSERT INTO mailer_campaignqueue (campaign_id, status, defer_reason, deferred_until, "
        "consecutive_transient_errors, last_error, started_at, queued_at) VALUES (%(c)s, "
        "%(status)s, %(defer_reason)s, %(deferred_until)s, %(consecutive_transient_errors)s, "
        "%(last_error)s, %(started_at)s, now())"
    )
    if connection is not None:
        connection.execute(statement, {"c": campaign_id, **values})
        return
    with connection_as(url, "crm") as conn:
        conn.execute(statement, {"c": campaign_id, **values})

"""The CRM's side of the tables in tests: its writes on a connection of its own.

mailer's connections are named ``mailer…`` (db/engine.py) and the tables' triggers treat
only other connections' writes as requests, so these go in as the CRM's would."""

from __future__ import annotations

import psycopg

from tests.support.harness import Harness


def crm_sql(harness: Harness, statement: str, **params: object) -> None:
    """SQL on a connection of the CRM's own (not named ``mailer``: its writes are requests)."""
    url = harness.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, application_name="crm", autocommit=True) as conn:
        conn.execute(statement, params)


def crm_queue(harness: Harness, campaign: str, **row: object) -> None:
    """The CRM's queue row, every column given (Django creates no database defaults)."""
    values: dict[str, object] = {
        "status": "pending",
        "defer_reason": "",
        "deferred_until": None,
        "consecutive_transient_errors": 0,
        "last_error": "",
        "started_at": None,
    }
    values.update(row)
    crm_sql(
        harness,
        "INSERT INTO mailer_campaignqueue (campaign_id, status, defer_reason, deferred_until, "
        "consecutive_transient_errors, last_error, started_at, queued_at) VALUES "
        "(%(c)s, %(status)s, %(defer_reason)s, %(deferred_until)s, "
        "%(consecutive_transient_errors)s, %(last_error)s, %(started_at)s, now())",
        c=campaign,
        **values,
    )

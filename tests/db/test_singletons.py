"""The quota and the account are read as the playbook reads them: the newest row
(``ORDER BY id DESC LIMIT 1``), whatever ids a CRM's table holds."""

from __future__ import annotations

from sqlalchemy import Engine, text

from activities.ledger import quota_available
from db.engine import session_scope
from db.queries import get_account, quota_row


def test_the_newest_quota_and_account_rows_are_the_ones_in_use(
    engine: Engine, database_url: str
) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO mailer_smtpbzquota (id, emails_available, emails_limit, hourly_limit,"
                " hourly_sent, sync_error, updated_at) VALUES (41, 777, 1000, 0, 0, '', now())"
            )
        )
        for account_id, host in ((7, "old.example"), (9, "smtp.example")):
            conn.execute(
                text(
                    "INSERT INTO mailer_globalmailaccount (id, smtp_host, smtp_port, "
                    "smtp_username, smtp_password, smtp_tls, from_email, from_name, "
                    "per_user_daily_limit, smtp_bz_api_key, is_active, updated_at) VALUES "
                    "(:id, :host, 587, '', '', 'starttls', '', '', 0, '', true, now())"
                ),
                {"id": account_id, "host": host},
            )
    with session_scope(database_url) as session:
        assert quota_available(session) == 777
        assert quota_row(session)["emails_available"] == 777
        account = get_account(session)
        assert account is not None and (account.id, account.smtp_host) == (9, "smtp.example")

"""The CRM's writes become requests: a trigger on the seed's campaign and queue tables
records every status change the CRM (or an operator's SQL) makes in mailer_request, which
the dispatcher (workflows/maintenance.py) acts on within seconds. mailer's own writes
(connections named ``mailer…``, db/engine.py) are not requests.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REQUEST_FUNCTION = """
CREATE OR REPLACE FUNCTION mailer_request_from_crm() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- mailer's own connections say who they are: their writes mirror the workflow.
    IF coalesce(current_setting('application_name', true), '') LIKE 'mailer%' THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'mailer_campaign' THEN
        INSERT INTO mailer_request (campaign_id) VALUES (NEW.id);
    ELSE
        INSERT INTO mailer_request (campaign_id) VALUES (NEW.campaign_id);
    END IF;
    PERFORM pg_notify('mailer_request', '');
    RETURN NULL;
END
$$
"""

TRIGGERS = {
    "mailer_campaign_status_request": (
        "AFTER UPDATE OF status ON mailer_campaign FOR EACH ROW "
        "WHEN (OLD.status IS DISTINCT FROM NEW.status)"
    ),
    "mailer_campaignqueue_insert_request": "AFTER INSERT ON mailer_campaignqueue FOR EACH ROW",
    "mailer_campaignqueue_update_request": (
        "AFTER UPDATE OF status, defer_reason, deferred_until ON mailer_campaignqueue "
        "FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status "
        "OR OLD.defer_reason IS DISTINCT FROM NEW.defer_reason "
        "OR OLD.deferred_until IS DISTINCT FROM NEW.deferred_until)"
    ),
}


def upgrade() -> None:
    op.create_table(
        "mailer_request",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.execute(REQUEST_FUNCTION)
    for name, when in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {when} EXECUTE FUNCTION mailer_request_from_crm()")


def downgrade() -> None:
    for name, when in TRIGGERS.items():
        table = when.split(" ON ")[1].split()[0]
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS mailer_request_from_crm()")
    op.drop_table("mailer_request")

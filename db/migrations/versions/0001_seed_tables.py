"""The seed's tables: campaigns, queue, recipients, send log, quota, account, users.

Revision ID: 0001
Revises:
Create Date: 2026-11-27 19:01:02.893192
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=150), nullable=False),
        sa.Column("email", sa.String(length=254), server_default="", nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "date_joined",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "mailer_globalmailaccount",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "smtp_host", sa.String(length=255), server_default="connect.smtp.bz", nullable=False
        ),
        sa.Column("smtp_port", sa.Integer(), server_default="587", nullable=False),
        sa.Column("smtp_username", sa.String(length=255), server_default="", nullable=False),
        sa.Column("smtp_password", sa.String(length=255), server_default="", nullable=False),
        sa.Column("smtp_tls", sa.String(length=10), server_default="starttls", nullable=False),
        sa.Column("from_email", sa.String(length=254), server_default="", nullable=False),
        sa.Column("from_name", sa.String(length=255), server_default="", nullable=False),
        sa.Column("per_user_daily_limit", sa.Integer(), server_default="0", nullable=False),
        sa.Column("smtp_bz_api_key", sa.String(length=255), server_default="", nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "smtp_tls IN ('none', 'starttls', 'tls')", name="mailer_globalmailaccount_tls_check"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "mailer_smtpbzquota",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("emails_available", sa.Integer(), server_default="0", nullable=False),
        sa.Column("emails_limit", sa.Integer(), server_default="0", nullable=False),
        sa.Column("hourly_limit", sa.Integer(), server_default="0", nullable=False),
        sa.Column("hourly_sent", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sync_error", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "mailer_campaign",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="ready", nullable=False),
        sa.Column("subject", sa.String(length=998), nullable=False),
        sa.Column("html_body", sa.Text(), server_default="", nullable=False),
        sa.Column("text_body", sa.Text(), server_default="", nullable=False),
        sa.Column("from_email", sa.String(length=254), server_default="", nullable=False),
        sa.Column("from_name", sa.String(length=255), server_default="", nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("total_recipients", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('draft', 'ready', 'sending', 'paused', 'sent', 'cancelled')",
            name="mailer_campaign_status_check",
        ),
        sa.ForeignKeyConstraint(["created_by_id"], ["accounts_user.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "mailer_campaign_created_by_idx", "mailer_campaign", ["created_by_id"], unique=False
    )
    op.create_index("mailer_campaign_status_idx", "mailer_campaign", ["status"], unique=False)
    op.create_table(
        "mailer_campaignqueue",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="pending", nullable=False),
        sa.Column("defer_reason", sa.String(length=32), server_default="", nullable=False),
        sa.Column("deferred_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consecutive_transient_errors", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), server_default="", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "queued_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'processing', 'completed', 'cancelled')",
            name="mailer_campaignqueue_status_check",
        ),
        sa.ForeignKeyConstraint(["campaign_id"], ["mailer_campaign.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id"),
    )
    op.create_index(
        "mailer_campaignqueue_status_idx",
        "mailer_campaignqueue",
        ["status", "queued_at"],
        unique=False,
    )
    op.create_table(
        "mailer_campaignrecipient",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=255), server_default="", nullable=False),
        sa.Column(
            "variables",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=20), server_default="pending", nullable=False),
        sa.Column("message_id", sa.String(length=255), server_default="", nullable=False),
        sa.Column("error", sa.Text(), server_default="", nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'failed')", name="mailer_campaignrecipient_status_check"
        ),
        sa.ForeignKeyConstraint(["campaign_id"], ["mailer_campaign.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "mailer_campaignrecipient_campaign_email_uniq",
        "mailer_campaignrecipient",
        ["campaign_id", sa.literal_column("lower(email)")],
        unique=True,
    )
    op.create_index(
        "mailer_campaignrecipient_campaign_status_idx",
        "mailer_campaignrecipient",
        ["campaign_id", "status"],
        unique=False,
    )
    op.create_index(
        "mailer_campaignrecipient_pending_idx",
        "mailer_campaignrecipient",
        ["campaign_id", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "mailer_sendlog",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("recipient_id", sa.BigInteger(), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("provider", sa.String(length=32), server_default="smtp_global", nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("message_id", sa.String(length=255), server_default="", nullable=False),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("status IN ('sent', 'failed')", name="mailer_sendlog_status_check"),
        sa.ForeignKeyConstraint(["campaign_id"], ["mailer_campaign.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["recipient_id"], ["mailer_campaignrecipient.id"], ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "mailer_sendlog_campaign_created_idx",
        "mailer_sendlog",
        ["campaign_id", "created_at"],
        unique=False,
    )
    op.create_index("mailer_sendlog_created_idx", "mailer_sendlog", ["created_at"], unique=False)
    op.create_index(
        "mailer_sendlog_recipient_idx", "mailer_sendlog", ["recipient_id"], unique=False
    )
    # The quota singleton exists from the start: no quota known until the first sync.
    op.execute(
        "INSERT INTO mailer_smtpbzquota (id, emails_available, emails_limit) VALUES (1, 0, 0)"
    )


def downgrade() -> None:
    op.drop_index("mailer_sendlog_recipient_idx", table_name="mailer_sendlog")
    op.drop_index("mailer_sendlog_created_idx", table_name="mailer_sendlog")
    op.drop_index("mailer_sendlog_campaign_created_idx", table_name="mailer_sendlog")
    op.drop_table("mailer_sendlog")
    op.drop_index(
        "mailer_campaignrecipient_pending_idx",
        table_name="mailer_campaignrecipient",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index(
        "mailer_campaignrecipient_campaign_status_idx", table_name="mailer_campaignrecipient"
    )
    op.drop_index(
        "mailer_campaignrecipient_campaign_email_uniq", table_name="mailer_campaignrecipient"
    )
    op.drop_table("mailer_campaignrecipient")
    op.drop_index("mailer_campaignqueue_status_idx", table_name="mailer_campaignqueue")
    op.drop_table("mailer_campaignqueue")
    op.drop_index("mailer_campaign_status_idx", table_name="mailer_campaign")
    op.drop_index("mailer_campaign_created_by_idx", table_name="mailer_campaign")
    op.drop_table("mailer_campaign")
    op.drop_table("mailer_smtpbzquota")
    op.drop_table("mailer_globalmailaccount")
    op.drop_table("accounts_user")

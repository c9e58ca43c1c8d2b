"""Test email requests (``mailer test-email``): the address and the outcome of each.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mailer_testemail",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column(
            "campaign_id",
            sa.Uuid(),
            sa.ForeignKey("mailer_campaign.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column(
            "requested_by_id",
            sa.Integer(),
            sa.ForeignKey("accounts_user.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("status", sa.String(20), server_default="requested", nullable=False),
        sa.Column("message_id", sa.String(255), server_default="", nullable=False),
        sa.Column("error", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('requested', 'sent', 'failed', 'refused')",
            name="mailer_testemail_status_check",
        ),
    )
    op.create_index(
        "mailer_testemail_campaign_idx", "mailer_testemail", ["campaign_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("mailer_testemail_campaign_idx", table_name="mailer_testemail")
    op.drop_table("mailer_testemail")

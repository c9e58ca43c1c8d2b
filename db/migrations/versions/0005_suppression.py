"""The suppression list: addresses never written to again (unsubscribed, hard bounce,
complaint, manual).

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mailer_suppression",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("address", sa.String(254), nullable=False, unique=True),
        sa.Column("reason", sa.String(20), nullable=False),
        sa.Column(
            "campaign_id",
            sa.Uuid(),
            sa.ForeignKey("mailer_campaign.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "reason IN ('unsubscribed', 'hard_bounce', 'complaint', 'manual')",
            name="mailer_suppression_reason_check",
        ),
        sa.CheckConstraint("address = lower(address)", name="mailer_suppression_lower_check"),
    )


def downgrade() -> None:
    op.drop_table("mailer_suppression")

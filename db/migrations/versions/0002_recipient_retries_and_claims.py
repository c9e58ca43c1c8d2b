"""Per-recipient retries and claims.

A 4xx at RCPT defers that recipient, not the campaign (``attempts``, ``retry_after``). A
send attempt claims the recipients it will send (``claim_token``, ``claimed_until``: a
lease it renews while alive), so two attempts of one batch never send to one recipient,
and the quota and daily allowance count what is in flight.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "mailer_campaignrecipient",
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "mailer_campaignrecipient",
        sa.Column("retry_after", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "mailer_campaignrecipient", sa.Column("claim_token", sa.String(64), nullable=True)
    )
    op.add_column(
        "mailer_campaignrecipient",
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "mailer_campaignrecipient_claimed_idx",
        "mailer_campaignrecipient",
        ["claim_token"],
        postgresql_where=sa.text("claim_token IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("mailer_campaignrecipient_claimed_idx", "mailer_campaignrecipient")
    op.drop_column("mailer_campaignrecipient", "claimed_until")
    op.drop_column("mailer_campaignrecipient", "claim_token")
    op.drop_column("mailer_campaignrecipient", "retry_after")
    op.drop_column("mailer_campaignrecipient", "attempts")

"""When a recipient's temporary refusals began, and a delivery whose outcome is unknown.

``deferred_since``: the first 4xx (or domain backoff) of the recipient's current wait; a
recipient still refused three days later fails, as an MTA's queue gives up
(MAILER_RECIPIENT_MAX_AGE_HOURS). ``outcome_unknown_at``: the connection was lost after the
message's final dot, so the server may have it; the recipient is tried once more (same
Message-ID) and never a third time.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "mailer_campaignrecipient",
        sa.Column("deferred_since", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "mailer_campaignrecipient",
        sa.Column("outcome_unknown_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("mailer_campaignrecipient", "outcome_unknown_at")
    op.drop_column("mailer_campaignrecipient", "deferred_since")

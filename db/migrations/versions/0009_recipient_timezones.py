"""Each recipient's own time zone (``MAILER_RECIPIENT_TIMEZONES=on``): the recipients CSV's
optional ``timezone`` column, an IANA name; '' means MAILER_TIMEZONE (the seed's one zone).

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting the table.
    op.add_column(
        "mailer_campaignrecipient",
        sa.Column("timezone", sa.String(64), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_column("mailer_campaignrecipient", "timezone")

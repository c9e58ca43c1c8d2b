"""The account's TLS trust: a private CA (PEM) and an explicit "do not verify" switch.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "mailer_globalmailaccount",
        sa.Column("smtp_ca_pem", sa.Text(), server_default="", nullable=False),
    )
    op.add_column(
        "mailer_globalmailaccount",
        sa.Column("smtp_verify_tls", sa.Boolean(), server_default=sa.text("true"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("mailer_globalmailaccount", "smtp_verify_tls")
    op.drop_column("mailer_globalmailaccount", "smtp_ca_pem")

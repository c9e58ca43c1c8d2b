"""A suppression reason for feedback reports no feedback loop vouched for.

A complaint counts (``mailer status``'s ``complaints``) only when a configured feedback loop
signed it (DKIM) or sent it; any other is kept as ``unverified_complaint``: still
suppressed, not counted.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = "mailer_suppression_reason_check"
_BEFORE = "reason IN ('unsubscribed', 'hard_bounce', 'complaint', 'manual')"
_AFTER = "reason IN ('unsubscribed', 'hard_bounce', 'complaint', 'unverified_complaint', 'manual')"


def upgrade() -> None:
    op.drop_constraint(_NAME, "mailer_suppression", type_="check")
    op.create_check_constraint(_NAME, "mailer_suppression", _AFTER)


def downgrade() -> None:
    op.execute(
        "UPDATE mailer_suppression SET reason = 'complaint' WHERE reason = 'unverified_complaint'"
    )
    op.drop_constraint(_NAME, "mailer_suppression", type_="check")
    op.create_check_constraint(_NAME, "mailer_suppression", _BEFORE)

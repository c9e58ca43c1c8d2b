"""SQLAlchemy models of the seed's tables, under the seed's table and column names.

The playbook's on-call SQL must keep running unchanged against these tables, so names and
meanings follow it: ``defer_reason`` is ``''`` when there is none, statuses are the seed's
words, campaign ids are UUIDs.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from workflows.states import (
    CampaignStatus,
    ProofEmailStatus,
    QueueStatus,
    RecipientStatus,
    SendLogStatus,
    SuppressionReason,
)

__all__ = [
    "PROVIDER_SMTP_GLOBAL",
    "PROVIDER_SMTP_TEST",
    "Base",
    "Campaign",
    "CampaignQueue",
    "CampaignRecipient",
    "CampaignStatus",
    "GlobalMailAccount",
    "ProofEmail",
    "ProofEmailStatus",
    "QueueStatus",
    "RecipientStatus",
    "SendLog",
    "SendLogStatus",
    "SmtpBzQuota",
    "SmtpTls",
    "Suppression",
    "SuppressionReason",
    "User",
]


class Base(DeclarativeBase):
    pass


class SmtpTls(enum.StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


PROVIDER_SMTP_GLOBAL = "smtp_global"
# A test email's send log row: the seed's counting SQL (daily limit, the last hour) reads
# provider = 'smtp_global' only, so test emails never count towards a limit.
PROVIDER_SMTP_TEST = "smtp_test"


def _check_in(column: str, values: type[enum.StrEnum]) -> str:
    allowed = ", ".join(f"'{member.value}'" for member in values)
    return f"{column} IN ({allowed})"


class User(Base):
    """The CRM's users; campaigns belong to their creator (daily limit, throttles)."""

    __tablename__ = "accounts_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    email: Mapped[str] = mapped_column(String(254), default="", server_default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    date_joined: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=func.now(), server_default=func.now()
    )


class Campaign(Base):
    __tablename__ = "mailer_campaign"
    __table_args__ = (
        CheckConstraint(_check_in("status", CampaignStatus), name="mailer_campaign_status_check"),
        Index("mailer_campaign_created_by_idx", "created_by_id"),
        Index("mailer_campaign_status_idx", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(
        String(20), default=CampaignStatus.READY.value, server_default=CampaignStatus.READY.value
    )
    subject: Mapped[str] = mapped_column(String(998))
    html_body: Mapped[str] = mapped_column(Text, default="", server_default="")
    text_body: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Empty means "use the global account's sender".
    from_email: Mapped[str] = mapped_column(String(254), default="", server_default="")
    from_name: Mapped[str] = mapped_column(String(255), default="", server_default="")
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts_user.id", ondelete="SET NULL")
    )
    total_recipients: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=func.now(), server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=func.now(), server_default=func.now(), onupdate=func.now()
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    created_by: Mapped[User | None] = relationship()
    queue: Mapped[CampaignQueue | None] = relationship(back_populates="campaign")


class CampaignQueue(Base):
    """The campaign's place in the sending machinery; mirrors the workflow's state."""

    __tablename__ = "mailer_campaignqueue"
    __table_args__ = (
        CheckConstraint(_check_in("status", QueueStatus), name="mailer_campaignqueue_status_check"),
        Index("mailer_campaignqueue_status_idx", "status", "queued_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    campaign_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("mailer_campaign.id", ondelete="CASCADE"), unique=True
    )
    status: Mapped[str] = mapped_column(
        String(20), default=QueueStatus.PENDING.value, server_default=QueueStatus.PENDING.value
    )
    defer_reason: Mapped[str] = mapped_column(String(32), default="", server_default="")
    deferred_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    consecutive_transient_errors: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0"
    )
    last_error: Mapped[str] = mapped_column(Text, default="", server_default="")
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    queued_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=func.now(), server_default=func.now()
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    campaign: Mapped[Campaign] = relationship(back_populates="queue")


class CampaignRecipient(Base):
    __tablename__ = "mailer_campaignrecipient"
    __table_args__ = (
        CheckConstraint(
            _check_in("status", RecipientStatus), name="mailer_campaignrecipient_status_check"
        ),
        # The send loop's hot query: the next pending recipients of one campaign, by id.
        Index(
            "mailer_campaignrecipient_pending_idx",
            "campaign_id",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("mailer_campaignrecipient_campaign_status_idx", "campaign_id", "status"),
        Index(
            "mailer_campaignrecipient_claimed_idx",
            "claim_token",
            postgresql_where=text("claim_token IS NOT NULL"),
        ),
        Index(
            "mailer_campaignrecipient_campaign_email_uniq",
            "campaign_id",
            func.lower(text("email")),
            unique=True,
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    campaign_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("mailer_campaign.id", ondelete="CASCADE")
    )
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(255), default="", server_default="")
    variables: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    # The recipient's IANA time zone (MAILER_RECIPIENT_TIMEZONES=on; not the seed's): its
    # working hours are counted there. '' means MAILER_TIMEZONE.
    timezone: Mapped[str] = mapped_column(String(64), default="", server_default="")
    status: Mapped[str] = mapped_column(
        String(20),
        default=RecipientStatus.PENDING.value,
        server_default=RecipientStatus.PENDING.value,
    )
    message_id: Mapped[str] = mapped_column(String(255), default="", server_default="")
    error: Mapped[str] = mapped_column(Text, default="", server_default="")
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Tries refused with a 4xx at RCPT, and when the next may be made (not the seed's:
    # added so one greylisted recipient waits alone instead of stopping its campaign).
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    retry_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The first temporary refusal of its current wait (it fails past the maximum age), and
    # when a delivery's outcome became unknown (the reply to the final dot never came).
    deferred_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome_unknown_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The send attempt holding this recipient, and until when its lease runs (renewed while
    # the attempt lives): another attempt never takes a recipient under a live lease.
    claim_token: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=func.now(), server_default=func.now()
    )


class SendLog(Base):
    __tablename__ = "mailer_sendlog"
    __table_args__ = (
        CheckConstraint(_check_in("status", SendLogStatus), name="mailer_sendlog_status_check"),
        # Today's sends per user: join from the user's campaigns, then a range on created_at.
        Index("mailer_sendlog_campaign_created_idx", "campaign_id", "created_at"),
        # Sends in the last hour, across campaigns.
        Index("mailer_sendlog_created_idx", "created_at"),
        Index("mailer_sendlog_recipient_idx", "recipient_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    campaign_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("mailer_campaign.id", ondelete="CASCADE")
    )
    recipient_id: Mapped[int | None] = mapped_column(
        ForeignKey("mailer_campaignrecipient.id", ondelete="SET NULL")
    )
    email: Mapped[str] = mapped_column(String(254))
    provider: Mapped[str] = mapped_column(
        String(32), default=PROVIDER_SMTP_GLOBAL, server_default=PROVIDER_SMTP_GLOBAL
    )
    status: Mapped[str] = mapped_column(String(20))
    message_id: Mapped[str] = mapped_column(String(255), default="", server_default="")
    smtp_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=func.now(), server_default=func.now()
    )


class ProofEmail(Base):
    """A ``mailer test-email`` request: the address lives here, so the workflow that sends it
    carries only this row's id."""

    __tablename__ = "mailer_testemail"
    __table_args__ = (
        CheckConstraint(
            _check_in("status", ProofEmailStatus), name="mailer_testemail_status_check"
        ),
        Index("mailer_testemail_campaign_idx", "campaign_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    campaign_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("mailer_campaign.id", ondelete="CASCADE")
    )
    email: Mapped[str] = mapped_column(String(254))
    # Whose MAILER_THROTTLE_TEST_EMAIL_PER_HOUR it counts against.
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("accounts_user.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(
        String(20),
        default=ProofEmailStatus.REQUESTED.value,
        server_default=ProofEmailStatus.REQUESTED.value,
    )
    message_id: Mapped[str] = mapped_column(String(255), default="", server_default="")
    error: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=func.now(), server_default=func.now()
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Suppression(Base):
    """An address mailer never writes to again (not the seed's: added for deliverability).

    ``address`` is stored lower-cased; campaigns match it against ``lower(email)``."""

    __tablename__ = "mailer_suppression"
    __table_args__ = (
        CheckConstraint(
            _check_in("reason", SuppressionReason), name="mailer_suppression_reason_check"
        ),
        CheckConstraint("address = lower(address)", name="mailer_suppression_lower_check"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    address: Mapped[str] = mapped_column(String(254), unique=True)
    reason: Mapped[str] = mapped_column(String(20))
    # The campaign whose message led to it (an unsubscribe link, a bounce), if any.
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("mailer_campaign.id", ondelete="SET NULL")
    )
    note: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=func.now(), server_default=func.now()
    )


class SmtpBzQuota(Base):
    """The provider quota as of the last sync, decremented per send: one row in use, the
    newest (mailer reads it as the playbook does, `ORDER BY id DESC LIMIT 1`)."""

    __tablename__ = "mailer_smtpbzquota"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    emails_available: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    emails_limit: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    hourly_limit: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    hourly_sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sync_error: Mapped[str] = mapped_column(Text, default="", server_default="")
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=func.now(), server_default=func.now(), onupdate=func.now()
    )


class GlobalMailAccount(Base):
    """The SMTP account every campaign sends through, and its limits: the newest row."""

    __tablename__ = "mailer_globalmailaccount"
    __table_args__ = (
        CheckConstraint(_check_in("smtp_tls", SmtpTls), name="mailer_globalmailaccount_tls_check"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    smtp_host: Mapped[str] = mapped_column(
        String(255), default="connect.smtp.bz", server_default="connect.smtp.bz"
    )
    smtp_port: Mapped[int] = mapped_column(Integer, default=587, server_default="587")
    smtp_username: Mapped[str] = mapped_column(String(255), default="", server_default="")
    smtp_password: Mapped[str] = mapped_column(String(255), default="", server_default="")
    smtp_tls: Mapped[str] = mapped_column(
        String(10), default=SmtpTls.STARTTLS.value, server_default=SmtpTls.STARTTLS.value
    )
    # A private CA the SMTP server's certificate is checked against (PEM; '' = the system's),
    # and the explicit switch that turns checking off (test relays only; logged loudly).
    smtp_ca_pem: Mapped[str] = mapped_column(Text, default="", server_default="")
    smtp_verify_tls: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=text("true")
    )
    from_email: Mapped[str] = mapped_column(String(254), default="", server_default="")
    from_name: Mapped[str] = mapped_column(String(255), default="", server_default="")
    # 0 means no per-user daily limit.
    per_user_daily_limit: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    smtp_bz_api_key: Mapped[str] = mapped_column(String(255), default="", server_default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=func.now(), server_default=func.now(), onupdate=func.now()
    )

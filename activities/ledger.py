"""The database side of sending: snapshots, start checks, state mirrors, per-message commits.

Plain synchronous functions over SQLAlchemy sessions; the activity layer runs them in
threads. "Now" is always a parameter (the workflow's clock), never the wall clock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from activities.quota import ProviderQuota
from db.models import (
    PROVIDER_SMTP_GLOBAL,
    SINGLETON_ID,
    Campaign,
    CampaignQueue,
    CampaignRecipient,
    CampaignStatus,
    GlobalMailAccount,
    QueueStatus,
    RecipientStatus,
    SendLog,
    SendLogStatus,
    SmtpBzQuota,
)
from db.queries import get_account, recipient_counts
from mailer.settings import Settings
from workflows.contracts import Limits, Snapshot
from workflows.gates import fair_share
from workflows.states import SELF_HELD_REASONS, BatchLimit
from workflows.working_hours import local_day_bounds


class CampaignRefused(Exception):
    """The campaign cannot be started; the message says why (shown to the operator)."""


@dataclass(frozen=True)
class AccountView:
    smtp_host: str
    smtp_port: int
    smtp_username: str
    smtp_password: str
    smtp_tls: str
    from_email: str
    from_name: str
    per_user_daily_limit: int


@dataclass(frozen=True)
class RecipientView:
    id: int
    email: str
    name: str
    variables: dict[str, Any]


@dataclass(frozen=True)
class CampaignView:
    id: uuid.UUID
    created_by_id: int | None
    subject: str
    html_body: str
    text_body: str
    from_email: str
    from_name: str


@dataclass(frozen=True)
class BatchPlan:
    """What one batch will send, decided under the creator's lock."""

    campaign: CampaignView
    account: AccountView
    recipients: list[RecipientView]
    # Why fewer than asked were picked.
    limited_by: BatchLimit
    # Quota taken for this batch up front (one per recipient); unused is given back.
    quota_reserved: int = 0
    # With RETRY_WAIT: when the first waiting recipient may be tried again.
    retry_at: datetime | None = None


def limits_for(settings: Settings, account: GlobalMailAccount | None) -> Limits:
    return Limits(
        timezone=settings.timezone,
        working_hours_start=settings.working_hours_start,
        working_hours_end=settings.working_hours_end,
        rate_per_hour=settings.rate_per_hour,
        per_user_daily_limit=account.per_user_daily_limit if account else 0,
        circuit_breaker_threshold=settings.circuit_breaker_threshold,
        transient_retry_delay_minutes=settings.transient_retry_delay_minutes,
        send_batch_size=settings.send_batch_size,
        continue_as_new_events=settings.continue_as_new_events,
        send_heartbeat_timeout_seconds=settings.send_heartbeat_timeout_seconds,
        send_batch_max_attempts=settings.send_batch_max_attempts,
    )


def sent_today(session: Session, campaign: Campaign, now: datetime, timezone: str) -> int:
    """The creator's successful sends in today's local day, all campaigns (the seed's SQL)."""
    start, end = local_day_bounds(now, timezone)
    query = (
        select(func.count())
        .select_from(SendLog)
        .join(Campaign, Campaign.id == SendLog.campaign_id)
        .where(
            SendLog.provider == PROVIDER_SMTP_GLOBAL,
            SendLog.status == SendLogStatus.SENT.value,
            SendLog.created_at >= start,
            SendLog.created_at < end,
        )
    )
    if campaign.created_by_id is None:
        query = query.where(SendLog.campaign_id == campaign.id)
    else:
        query = query.where(Campaign.created_by_id == campaign.created_by_id)
    return int(session.scalar(query) or 0)


def quota_available(session: Session) -> int:
    quota = session.get(SmtpBzQuota, SINGLETON_ID)
    return quota.emails_available if quota else 0


def active_campaign_count(session: Session) -> int:
    """Campaigns competing for the hourly window: sending, not held back by their own
    daily limit or transient errors."""
    query = (
        select(func.count())
        .select_from(Campaign)
        .join(CampaignQueue, CampaignQueue.campaign_id == Campaign.id)
        .where(
            Campaign.status == CampaignStatus.SENDING.value,
            CampaignQueue.defer_reason.not_in(SELF_HELD_REASONS),
        )
    )
    return int(session.scalar(query) or 0)


def sends_this_hour(session: Session, campaign_id: uuid.UUID, now: datetime, timezone: str) -> int:
    """Messages this campaign handed to the server in the current clock hour."""
    hour_start = now.astimezone(ZoneInfo(timezone)).replace(minute=0, second=0, microsecond=0)
    query = (
        select(func.count())
        .select_from(SendLog)
        .where(SendLog.campaign_id == campaign_id, SendLog.created_at >= hour_start)
    )
    return int(session.scalar(query) or 0)


def take_snapshot(
    session: Session, campaign_id: uuid.UUID, now: datetime, settings: Settings
) -> Snapshot:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignRefused(f"no campaign {campaign_id}")
    limits = limits_for(settings, get_account(session))
    counts = recipient_counts(session, campaign_id)
    return Snapshot(
        limits=limits,
        quota_available=quota_available(session),
        sent_today_by_creator=sent_today(session, campaign, now, limits.timezone),
        active_campaigns=active_campaign_count(session),
        pending=counts.pending,
        sent=counts.sent,
        failed=counts.failed,
    )


def _queue(session: Session, campaign_id: uuid.UUID) -> CampaignQueue | None:
    return session.scalar(select(CampaignQueue).where(CampaignQueue.campaign_id == campaign_id))


def start_campaign(
    session: Session, campaign_id: uuid.UUID, now: datetime, settings: Settings
) -> Campaign:
    """Check the campaign can start and mark it sending; idempotent for a retried start.

    Raises :class:`CampaignRefused` with the reason otherwise. The start throttle is the
    caller's (it lives in Redis).
    """
    campaign = session.scalar(select(Campaign).where(Campaign.id == campaign_id).with_for_update())
    if campaign is None:
        raise CampaignRefused(f"no campaign {campaign_id}")
    if campaign.status == CampaignStatus.SENDING.value:
        return campaign  # this start already went through (an activity retry)
    if campaign.status != CampaignStatus.READY.value:
        raise CampaignRefused(f"campaign {campaign_id} is {campaign.status}, not ready to start")
    total = int(
        session.scalar(
            select(func.count())
            .select_from(CampaignRecipient)
            .where(CampaignRecipient.campaign_id == campaign_id)
        )
        or 0
    )
    if total > settings.max_campaign_recipients:
        raise CampaignRefused(
            f"campaign {campaign_id} has {total} recipients, more than "
            f"MAILER_MAX_CAMPAIGN_RECIPIENTS={settings.max_campaign_recipients}"
        )
    return campaign


def mark_started(session: Session, campaign: Campaign, now: datetime) -> None:
    campaign.status = CampaignStatus.SENDING.value
    campaign.started_at = campaign.started_at or now
    queue = _queue(session, campaign.id)
    if queue is None:
        queue = CampaignQueue(campaign_id=campaign.id, queued_at=now)
        session.add(queue)
    queue.status = QueueStatus.PENDING.value
    queue.defer_reason = ""
    queue.deferred_until = None
    queue.consecutive_transient_errors = 0
    queue.started_at = None
    queue.finished_at = None


def record_state(
    session: Session,
    campaign_id: uuid.UUID,
    now: datetime,
    *,
    campaign_status: str,
    queue_status: str,
    defer_reason: str,
    deferred_until: datetime | None,
    consecutive_transient_errors: int,
    last_error: str,
) -> None:
    """Mirror the workflow's state so the playbook's SQL tells the truth."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        return
    campaign.status = campaign_status
    finished = campaign_status in (CampaignStatus.SENT.value, CampaignStatus.CANCELLED.value)
    if finished:
        campaign.finished_at = now
    queue = _queue(session, campaign_id)
    if queue is None:
        queue = CampaignQueue(campaign_id=campaign_id, queued_at=now)
        session.add(queue)
    if queue_status == QueueStatus.PROCESSING.value and queue.status != queue_status:
        queue.started_at = now
    elif queue_status != QueueStatus.PROCESSING.value:
        queue.started_at = None
    queue.status = queue_status
    queue.defer_reason = defer_reason
    queue.deferred_until = deferred_until
    queue.consecutive_transient_errors = consecutive_transient_errors
    queue.last_error = last_error
    queue.finished_at = now if finished else None


# --- one batch -----------------------------------------------------------------------------


def _lock_key(campaign: Campaign) -> str:
    # Batches of one creator's campaigns run one at a time, so the daily count is exact.
    owner = campaign.created_by_id if campaign.created_by_id is not None else campaign.id
    return f"mailer:creator:{owner}"


def try_advisory_lock(conn: Connection, key: str) -> bool:
    """Take the session-level advisory lock on ``key`` on ``conn`` if it is free."""
    got = bool(conn.execute(select(func.pg_try_advisory_lock(func.hashtext(key)))).scalar())
    conn.commit()
    return got


def release_advisory_lock(conn: Connection, key: str) -> None:
    conn.execute(select(func.pg_advisory_unlock(func.hashtext(key))))
    conn.commit()


def lock_key_for(session: Session, campaign_id: uuid.UUID) -> str | None:
    """The creator's lock key when a daily limit applies (else batches need no lock)."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignRefused(f"no campaign {campaign_id}")
    account = get_account(session)
    if account is None or account.per_user_daily_limit <= 0:
        return None
    return _lock_key(campaign)


@dataclass(frozen=True)
class _Allowance:
    count: int
    limited_by: BatchLimit


def _allowance(
    session: Session,
    campaign: Campaign,
    account: GlobalMailAccount,
    quota: SmtpBzQuota | None,
    now: datetime,
    max_messages: int,
    settings: Settings,
) -> _Allowance:
    """How many the batch may take: the quota, the creator's day, the fair share of the hour."""
    allowed = min(max_messages, quota.emails_available if quota else 0)
    if account.per_user_daily_limit > 0:
        left = account.per_user_daily_limit - sent_today(session, campaign, now, settings.timezone)
        allowed = min(allowed, left)
    limited_by = BatchLimit.QUOTA_OR_DAY if allowed < max_messages else BatchLimit.NONE
    share = fair_share(settings.rate_per_hour, active_campaign_count(session))
    share_left = share - sends_this_hour(session, campaign.id, now, settings.timezone)
    if share_left < allowed:
        allowed, limited_by = share_left, BatchLimit.RATE_SHARE
    return _Allowance(max(0, allowed), limited_by)


def _pending_recipients(
    session: Session, campaign_id: uuid.UUID, now: datetime, limit: int
) -> list[CampaignRecipient]:
    """The next pending recipients by id, leaving out those waiting for a 4xx retry."""
    return list(
        session.scalars(
            select(CampaignRecipient)
            .where(
                CampaignRecipient.campaign_id == campaign_id,
                CampaignRecipient.status == RecipientStatus.PENDING,
                or_(CampaignRecipient.retry_after.is_(None), CampaignRecipient.retry_after <= now),
            )
            .order_by(CampaignRecipient.id)
            .limit(limit)
        ).all()
    )


def _earliest_retry(session: Session, campaign_id: uuid.UUID) -> datetime | None:
    """When the first recipient waiting for a 4xx retry may be tried again."""
    return session.scalar(
        select(func.min(CampaignRecipient.retry_after)).where(
            CampaignRecipient.campaign_id == campaign_id,
            CampaignRecipient.status == RecipientStatus.PENDING,
        )
    )


def _mark_processing(session: Session, campaign_id: uuid.UUID, now: datetime) -> None:
    queue = _queue(session, campaign_id)
    if queue is not None and queue.status != QueueStatus.PROCESSING:
        queue.status = QueueStatus.PROCESSING
        queue.started_at = now
        queue.defer_reason = ""
        queue.deferred_until = None


def _campaign_view(campaign: Campaign, account: GlobalMailAccount) -> CampaignView:
    return CampaignView(
        id=campaign.id,
        created_by_id=campaign.created_by_id,
        subject=campaign.subject,
        html_body=campaign.html_body,
        text_body=campaign.text_body,
        from_email=campaign.from_email or account.from_email,
        from_name=campaign.from_name or account.from_name,
    )


def _account_view(account: GlobalMailAccount) -> AccountView:
    return AccountView(
        smtp_host=account.smtp_host,
        smtp_port=account.smtp_port,
        smtp_username=account.smtp_username,
        smtp_password=account.smtp_password,
        smtp_tls=account.smtp_tls,
        from_email=account.from_email,
        from_name=account.from_name,
        per_user_daily_limit=account.per_user_daily_limit,
    )


def plan_batch(
    session: Session, campaign_id: uuid.UUID, now: datetime, max_messages: int, settings: Settings
) -> BatchPlan:
    """Pick the recipients of the next batch and reserve quota for them.

    The caller holds the creator's lock when a daily limit applies, so the day's count
    cannot change underneath. The quota row is locked while it is read and decremented, so
    concurrent batches never take more than there is.
    """
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignRefused(f"no campaign {campaign_id}")
    account = get_account(session)
    if account is None:
        raise CampaignRefused("no mail account: configure it with `mailer account set`")
    quota = session.scalar(
        select(SmtpBzQuota).where(SmtpBzQuota.id == SINGLETON_ID).with_for_update()
    )
    allowance = _allowance(session, campaign, account, quota, now, max_messages, settings)
    rows = _pending_recipients(session, campaign_id, now, allowance.count)
    limited_by = allowance.limited_by if len(rows) < max_messages else BatchLimit.NONE
    retry_at = None
    if rows:
        if quota is not None:
            quota.emails_available -= len(rows)
        _mark_processing(session, campaign_id, now)
    elif allowance.count > 0:
        retry_at = _earliest_retry(session, campaign_id)
        limited_by = BatchLimit.RETRY_WAIT if retry_at is not None else limited_by
    return BatchPlan(
        campaign=_campaign_view(campaign, account),
        account=_account_view(account),
        recipients=[RecipientView(r.id, r.email, r.name, dict(r.variables or {})) for r in rows],
        limited_by=limited_by,
        quota_reserved=len(rows) if quota is not None else 0,
        retry_at=retry_at,
    )


def release_quota(engine: Engine, unused: int) -> None:
    """Give back quota reserved for messages that were not accepted."""
    if unused <= 0:
        return
    with engine.begin() as conn:
        conn.execute(
            update(SmtpBzQuota)
            .where(SmtpBzQuota.id == SINGLETON_ID)
            .values(emails_available=SmtpBzQuota.emails_available + unused)
        )


_RECORD_SENT = text(
    """
    WITH recipient AS (
        UPDATE mailer_campaignrecipient
           SET status = 'sent', message_id = :message_id, sent_at = :now, error = ''
         WHERE id = :recipient_id AND status = 'pending'
     RETURNING id, campaign_id, email
    )
    INSERT INTO mailer_sendlog (campaign_id, recipient_id, email, provider, status, message_id,
                                smtp_code, error, created_at)
    SELECT campaign_id, id, email, 'smtp_global', 'sent', :message_id, 250, '', :now
      FROM recipient
    """
)


def record_sent(conn: Connection, recipient_id: int, message_id: str, now: datetime) -> None:
    """After the server's 250: recipient sent + send log, committed at once (the quota was
    taken when the batch was planned). ``conn`` is the batch's own connection."""
    conn.execute(_RECORD_SENT, {"recipient_id": recipient_id, "message_id": message_id, "now": now})
    conn.commit()


@dataclass(frozen=True)
class Refusal:
    """One recipient's message refused (or unsendable): what the ledger records of it."""

    campaign_id: uuid.UUID
    recipient_id: int
    email: str
    message_id: str
    code: int | None
    error: str  # may hold the address: it stays in the database
    at: datetime


def _failure_log(refusal: Refusal) -> Any:
    return insert(SendLog).values(
        campaign_id=refusal.campaign_id,
        recipient_id=refusal.recipient_id,
        email=refusal.email,
        provider=PROVIDER_SMTP_GLOBAL,
        status=SendLogStatus.FAILED,
        message_id=refusal.message_id,
        smtp_code=refusal.code,
        error=refusal.error,
        created_at=refusal.at,
    )


def record_failed(conn: Connection, refusal: Refusal) -> None:
    """A permanent refusal: the recipient is failed and never retried; committed."""
    conn.execute(
        update(CampaignRecipient)
        .where(
            CampaignRecipient.id == refusal.recipient_id,
            CampaignRecipient.status == RecipientStatus.PENDING,
        )
        .values(status=RecipientStatus.FAILED, error=refusal.error, message_id=refusal.message_id)
    )
    conn.execute(_failure_log(refusal))
    conn.commit()


_RECORD_DEFERRED = text(
    """
    UPDATE mailer_campaignrecipient
       SET attempts = attempts + 1,
           retry_after = :retry_after,
           error = :error,
           message_id = :message_id,
           status = CASE WHEN attempts + 1 >= :max_attempts THEN 'failed' ELSE 'pending' END
     WHERE id = :recipient_id AND status = 'pending'
    RETURNING status
    """
)


def record_deferred(
    conn: Connection,
    refusal: Refusal,
    *,
    retry_after: datetime,
    max_attempts: int,
) -> bool:
    """A 4xx at RCPT: the recipient waits until ``retry_after``, or fails after its last
    attempt (with a send-log row, like any failure). Committed. True if it failed for good."""
    status = conn.execute(
        _RECORD_DEFERRED,
        {
            "recipient_id": refusal.recipient_id,
            "retry_after": retry_after,
            "error": refusal.error,
            "message_id": refusal.message_id,
            "max_attempts": max_attempts,
        },
    ).scalar()
    failed = status == RecipientStatus.FAILED
    if failed:
        conn.execute(_failure_log(refusal))
    conn.commit()
    return failed


def store_quota(
    session: Session, now: datetime, numbers: ProviderQuota | None, *, error: str = ""
) -> int:
    """Write a quota sync's result; without numbers (an error) the old ones stay.
    Returns emails_available."""
    quota = session.get(SmtpBzQuota, SINGLETON_ID)
    if quota is None:
        quota = SmtpBzQuota(id=SINGLETON_ID, emails_available=0, emails_limit=0)
        session.add(quota)
    if numbers is not None:
        quota.emails_available = numbers.quota
        quota.emails_limit = numbers.tarif_quota
        quota.hourly_limit = numbers.hlimit
        quota.hourly_sent = numbers.hsent
        quota.last_synced_at = now
    quota.sync_error = error
    session.flush()
    return quota.emails_available


def campaigns_deferred_on(session: Session, reason: str) -> list[str]:
    """Ids of sending campaigns whose queue row is deferred for ``reason``."""
    rows = session.scalars(
        select(CampaignQueue.campaign_id)
        .join(Campaign, Campaign.id == CampaignQueue.campaign_id)
        .where(
            Campaign.status == CampaignStatus.SENDING.value,
            CampaignQueue.defer_reason == reason,
        )
    ).all()
    return [str(campaign_id) for campaign_id in rows]


def active_campaigns(session: Session) -> list[tuple[str, str, str]]:
    """(campaign id, campaign status, queue status) of campaigns sending or paused."""
    rows = session.execute(
        select(Campaign.id, Campaign.status, CampaignQueue.status)
        .outerjoin(CampaignQueue, CampaignQueue.campaign_id == Campaign.id)
        .where(Campaign.status.in_((CampaignStatus.SENDING.value, CampaignStatus.PAUSED.value)))
    ).all()
    return [(str(cid), status, queue or "") for cid, status, queue in rows]


def release_processing(session: Session, campaign_id: uuid.UUID) -> None:
    """The playbook's reset of a stuck queue row: back to pending, started_at cleared."""
    queue = _queue(session, campaign_id)
    if queue is not None and queue.status == QueueStatus.PROCESSING.value:
        queue.status = QueueStatus.PENDING.value
        queue.started_at = None


def api_key(session: Session) -> str:
    account = get_account(session)
    return account.smtp_bz_api_key if account else ""

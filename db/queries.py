"""Read-side queries the CLI and activities share (counts, status)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from db.models import (
    Campaign,
    CampaignQueue,
    CampaignRecipient,
    GlobalMailAccount,
    RecipientStatus,
    SmtpBzQuota,
    Suppression,
)
from workflows.states import (
    FINISHED_CAMPAIGN_STATUSES,
    SUPPRESSED_ERROR_PREFIX,
    CampaignStatus,
    SuppressionReason,
)


@dataclass(frozen=True)
class RecipientCounts:
    pending: int = 0
    sent: int = 0
    failed: int = 0


@dataclass(frozen=True)
class CampaignRow:
    """One line of ``mailer list``."""

    campaign_id: str
    name: str
    status: str
    queue_status: str | None
    defer_reason: str
    deferred_until: datetime | None
    pending: int
    sent: int
    failed: int
    # A scheduled start not reached yet (``mailer start --at``).
    scheduled_for: datetime | None


@dataclass(frozen=True)
class CampaignStatusView(CampaignRow):
    """What ``mailer status`` shows: the DB's view of a campaign (the playbook's fields)."""

    consecutive_transient_errors: int
    last_error: str
    total: int
    created_by_id: int | None
    # Of ``failed``: recipients left unsent because their address is suppressed.
    suppressed: int = 0
    # Addresses this campaign's messages put on the suppression list, by reason: mailboxes
    # that do not exist (refused at send or reported later), unsubscribes, spam complaints
    # a feedback loop vouched for, and feedback reports nobody did (not counted as such).
    hard_bounces: int = 0
    unsubscribes: int = 0
    complaints: int = 0
    unverified_complaints: int = 0


def get_account(session: Session) -> GlobalMailAccount | None:
    """The global mail account, if it was set up: the newest row, as the playbook reads it
    (``ORDER BY id DESC LIMIT 1``; a CRM's table may hold older rows or start at any id)."""
    return session.scalar(select(GlobalMailAccount).order_by(GlobalMailAccount.id.desc()).limit(1))


def latest_quota(session: Session, *, for_update: bool = False) -> SmtpBzQuota | None:
    """The quota row as the playbook reads it: the newest (locked with ``for_update``)."""
    query = select(SmtpBzQuota).order_by(SmtpBzQuota.id.desc()).limit(1)
    return session.scalar(query.with_for_update() if for_update else query)


def recipient_counts_of(
    campaign_id: uuid.UUID | InstrumentedAttribute[uuid.UUID],
) -> Select[int, int, int]:
    """A campaign's recipients by status (``pending``, ``sent``, ``failed``) in one pass;
    ``campaign_id`` may be another statement's column (the snapshot's LATERAL)."""
    by = CampaignRecipient.status
    return select(
        func.count().filter(by == RecipientStatus.PENDING).label("pending"),
        func.count().filter(by == RecipientStatus.SENT).label("sent"),
        func.count().filter(by == RecipientStatus.FAILED).label("failed"),
    ).where(CampaignRecipient.campaign_id == campaign_id)


def recipient_counts(session: Session, campaign_id: uuid.UUID) -> RecipientCounts:
    row = session.execute(recipient_counts_of(campaign_id)).one()
    return RecipientCounts(pending=row.pending, sent=row.sent, failed=row.failed)


def campaign_status_view(session: Session, campaign_id: uuid.UUID) -> CampaignStatusView | None:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        return None
    queue = session.scalar(select(CampaignQueue).where(CampaignQueue.campaign_id == campaign_id))
    counts = recipient_counts(session, campaign_id)
    added = {
        str(reason): int(n)
        for reason, n in session.execute(
            select(Suppression.reason, func.count())
            .where(Suppression.campaign_id == campaign_id)
            .group_by(Suppression.reason)
        )
    }
    return CampaignStatusView(
        **_row_fields(campaign, queue),
        consecutive_transient_errors=queue.consecutive_transient_errors if queue else 0,
        last_error=queue.last_error if queue else "",
        pending=counts.pending,
        sent=counts.sent,
        failed=counts.failed,
        total=counts.pending + counts.sent + counts.failed,
        created_by_id=campaign.created_by_id,
        suppressed=_count(
            select(func.count())
            .select_from(CampaignRecipient)
            .where(
                CampaignRecipient.campaign_id == campaign_id,
                CampaignRecipient.status == RecipientStatus.FAILED.value,
                CampaignRecipient.error.startswith(SUPPRESSED_ERROR_PREFIX),
            ),
            session,
        ),
        hard_bounces=added.get(SuppressionReason.HARD_BOUNCE.value, 0),
        unsubscribes=added.get(SuppressionReason.UNSUBSCRIBED.value, 0),
        complaints=added.get(SuppressionReason.COMPLAINT.value, 0),
        unverified_complaints=added.get(SuppressionReason.UNVERIFIED_COMPLAINT.value, 0),
    )


def _count(query: Select[int], session: Session) -> int:
    return int(session.scalar(query) or 0)


def parse_campaign_id(value: str) -> uuid.UUID | None:
    """A campaign UUID from operator input, or ``None`` if it is not one."""
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        return None


def campaign_list(
    session: Session, *, reason: str | None = None, include_finished: bool = False, limit: int = 200
) -> list[CampaignRow]:
    """Campaigns with their queue state and recipient counts, newest first."""
    counts = (
        select(
            CampaignRecipient.campaign_id.label("campaign_id"),
            *(
                func.count().filter(CampaignRecipient.status == status).label(status.value)
                for status in RecipientStatus
            ),
        )
        .group_by(CampaignRecipient.campaign_id)
        .subquery()
    )
    query = (
        select(Campaign, CampaignQueue, counts.c.pending, counts.c.sent, counts.c.failed)
        .outerjoin(CampaignQueue, CampaignQueue.campaign_id == Campaign.id)
        .outerjoin(counts, counts.c.campaign_id == Campaign.id)
        .order_by(Campaign.created_at.desc())
        .limit(limit)
    )
    if not include_finished:
        query = query.where(Campaign.status.not_in(FINISHED_CAMPAIGN_STATUSES))
    if reason:
        query = query.where(CampaignQueue.defer_reason == reason)
    return [
        CampaignRow(
            **_row_fields(campaign, queue),
            pending=pending or 0,
            sent=sent or 0,
            failed=failed or 0,
        )
        for campaign, queue, pending, sent, failed in session.execute(query).all()
    ]


def quota_row(session: Session) -> dict[str, object]:
    """The playbook's quota check: available, limit, last sync, sync error."""
    quota = latest_quota(session)
    if quota is None:
        return {"emails_available": None}
    return {
        "emails_available": quota.emails_available,
        "emails_limit": quota.emails_limit,
        "last_synced_at": quota.last_synced_at.isoformat() if quota.last_synced_at else None,
        "sync_error": quota.sync_error,
    }


def recipient_domain() -> ColumnElement[str]:
    """A recipient's domain, lower-cased (after the last @): what pacing groups match."""
    return func.lower(func.substring(CampaignRecipient.email, "@([^@]*)$"))


def pending_by_domain(session: Session, campaign_id: uuid.UUID) -> dict[str, int]:
    """The campaign's pending recipients per (lower-cased) domain."""
    domain = recipient_domain()
    rows = session.execute(
        select(domain, func.count())
        .where(
            CampaignRecipient.campaign_id == campaign_id,
            CampaignRecipient.status == RecipientStatus.PENDING.value,
        )
        .group_by(domain)
    ).all()
    return {str(name): int(count) for name, count in rows}


def pending_by_zone(session: Session, campaign_id: uuid.UUID) -> dict[str, int]:
    """The campaign's pending recipients per stored time zone ('' for MAILER_TIMEZONE)."""
    rows = session.execute(
        select(CampaignRecipient.timezone, func.count())
        .where(
            CampaignRecipient.campaign_id == campaign_id,
            CampaignRecipient.status == RecipientStatus.PENDING.value,
        )
        .group_by(CampaignRecipient.timezone)
    ).all()
    return {str(name): int(count) for name, count in rows}


@dataclass(frozen=True)
class WaitingDomain:
    """Recipients of one domain waiting for their own retry (a 4xx, a domain backoff)."""

    domain: str
    waiting: int
    next_try: datetime
    most_attempts: int


def waiting_by_domain(
    session: Session, campaign_id: uuid.UUID, now: datetime, *, limit: int = 10
) -> list[WaitingDomain]:
    """The campaign's domains with pending recipients not yet due, most waiting first."""
    domain = recipient_domain()
    rows = session.execute(
        select(
            domain,
            func.count(),
            func.min(CampaignRecipient.retry_after),
            func.max(CampaignRecipient.attempts),
        )
        .where(
            CampaignRecipient.campaign_id == campaign_id,
            CampaignRecipient.status == RecipientStatus.PENDING.value,
            CampaignRecipient.retry_after > now,
        )
        .group_by(domain)
        .order_by(func.count().desc(), domain)
        .limit(limit)
    ).all()
    return [
        WaitingDomain(str(d), int(n), when, int(a)) for d, n, when, a in rows if when is not None
    ]


def _row_fields(campaign: Campaign, queue: CampaignQueue | None) -> dict[str, Any]:
    """The fields of a campaign's line that come from its row and its queue row."""
    return {
        "campaign_id": str(campaign.id),
        "name": campaign.name,
        "status": campaign.status,
        "queue_status": queue.status if queue else None,
        "defer_reason": queue.defer_reason if queue else "",
        "deferred_until": queue.deferred_until if queue else None,
        "scheduled_for": scheduled_for(campaign, queue),
    }


def scheduled_for(campaign: Campaign, queue: CampaignQueue | None) -> datetime | None:
    """A scheduled start not reached: a campaign never started (``ready``, or ``paused``
    before its start) whose queue row holds the start time in ``deferred_until``."""
    unstarted = campaign.started_at is None and campaign.status in (
        CampaignStatus.READY.value,
        CampaignStatus.PAUSED.value,
    )
    if not unstarted or queue is None or queue.defer_reason:
        return None
    return queue.deferred_until

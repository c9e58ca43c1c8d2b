"""Planning a batch: which recipients it takes, claimed for one send attempt.

A batch *claims* its recipients: each row gets the attempt's token and a lease
(``claimed_until``) that the attempt renews while it lives. Another attempt — a retry
running beside a slow first one, or another worker — never takes a recipient under a
live lease, so no two attempts send to one recipient; a dead attempt's lease simply runs
out. The claims are also the reservations: the quota is taken per claim and given back
per released claim, the creator's daily allowance counts live claims, and the quota sync
stores the provider's number minus what is claimed (in flight).

Planning takes a transaction-level advisory lock on the creator when a daily limit
applies, so the day's count is exact without holding any lock while sending.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    Integer,
    Interval,
    Select,
    String,
    Update,
    bindparam,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from activities.ledger import (
    CAMPAIGN_ID,
    RATE_CAP,
    CampaignRefused,
    active_campaigns_now,
    claimed_by_the_creator_of,
    day_of,
    hour_of,
    limits_for,
    live_claim,
    sends_this_hour_by,
    sent_today_of,
    stored_pending_zones,
    this_campaign,
)
from db.models import (
    Campaign,
    CampaignRecipient,
    GlobalMailAccount,
    SmtpBzQuota,
)
from db.queries import get_account, latest_quota, recipient_domain
from mailer.core.settings import Settings
from mailer.mail.views import AccountView, CampaignView, RecipientView
from workflows.gates import fair_share, working_hours
from workflows.states import (
    SUPPRESSED_ERROR_PREFIX,
    BatchLimit,
    CampaignStatus,
    RecipientStatus,
)
from workflows.working_hours import in_zone, is_working_time


@dataclass(frozen=True)
class BatchPlan:
    """What one batch will send, claimed for one attempt."""

    campaign: CampaignView
    account: AccountView
    recipients: list[RecipientView]
    # Why fewer than asked were picked.
    limited_by: BatchLimit
    # With RETRY_WAIT: when a waiting recipient may be tried again (a 4xx retry, or another
    # attempt's claims running out).
    retry_at: datetime | None = None
    # Claimed recipients whose address is on the suppression list: failed, not sent.
    suppressed: int = 0


@dataclass(frozen=True)
class Claim:
    """The attempt claiming recipients, and how long its lease runs without renewal."""

    token: str
    lease: timedelta


def _lock_creator(session: Session, campaign: Campaign) -> None:
    """Serialise planning for one creator until this transaction ends (never while sending)."""
    owner = campaign.created_by_id if campaign.created_by_id is not None else campaign.id
    session.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"mailer:creator:{owner}"))))


@dataclass(frozen=True)
class _Allowance:
    count: int
    limited_by: BatchLimit


@functools.cache
def _allowance_statement(daily: bool) -> Select[int, int, int, int]:
    """The counts a batch's allowance needs (CAMPAIGN_ID, HOUR_*, and DAY_* when ``daily``)."""
    this = this_campaign()
    return select(
        active_campaigns_now().label("active"),
        sends_this_hour_by(this).label("sent_this_hour"),
        (sent_today_of(this) if daily else literal(0)).label("sent_today"),
        (claimed_by_the_creator_of(this) if daily else literal(0)).label("in_flight"),
    ).where(this.id == CAMPAIGN_ID)


def _allowance(
    session: Session,
    campaign: Campaign,
    account: GlobalMailAccount,
    quota: SmtpBzQuota | None,
    now: datetime,
    max_messages: int,
    settings: Settings,
) -> _Allowance:
    """How many the batch may take: the quota, the creator's day, the fair share of the hour.

    The counts it needs are read in one statement (one round trip per batch)."""
    daily = account.per_user_daily_limit > 0
    params = {
        CAMPAIGN_ID.key: campaign.id,
        RATE_CAP.key: settings.rate_per_hour,
        **hour_of(now, settings.timezone),
        **(day_of(now, settings.timezone) if daily else {}),
    }
    counts = session.execute(_allowance_statement(daily), params).one()
    allowed = min(max_messages, quota.emails_available if quota else 0)
    if daily:
        left = account.per_user_daily_limit - counts.sent_today - counts.in_flight
        allowed = min(allowed, left)
    limited_by = BatchLimit.QUOTA_OR_DAY if allowed < max_messages else BatchLimit.NONE
    share = fair_share(settings.rate_per_hour, counts.active)
    share_left = share - counts.sent_this_hour
    if share_left < allowed:
        allowed, limited_by = share_left, BatchLimit.RATE_SHARE
    return _Allowance(max(0, allowed), limited_by)


NOW = bindparam("now", type_=DateTime(timezone=True))
SKIP_DOMAINS: BindParameter[list[str]] = bindparam("skip_domains", expanding=True)
CLOSED_ZONES: BindParameter[list[str]] = bindparam("closed_zones", expanding=True)
CLAIM_TOKEN = bindparam("the_claim_token", type_=String())
CLAIM_LEASE = bindparam("the_claim_lease", type_=Interval())
CLAIM_LIMIT = bindparam("the_claim_limit", type_=Integer())


def _ready() -> list[ColumnElement[bool]]:
    """Pending, not waiting for a 4xx retry at NOW, not under another attempt's live lease
    (of the campaign CAMPAIGN_ID)."""
    return [
        CampaignRecipient.campaign_id == CAMPAIGN_ID,
        CampaignRecipient.status == RecipientStatus.PENDING,
        or_(CampaignRecipient.retry_after.is_(None), CampaignRecipient.retry_after <= NOW),
        or_(
            CampaignRecipient.claim_token.is_(None),
            CampaignRecipient.claimed_until <= func.now(),
        ),
    ]


@functools.cache
def _claim_statement(skipping_domains: bool, closing_zones: bool) -> Update:
    """Claim up to CLAIM_LIMIT ready recipients by id for CLAIM_TOKEN and CLAIM_LEASE,
    leaving out SKIP_DOMAINS and CLOSED_ZONES when asked; rows another planner is claiming
    are skipped (built once per shape, like the ledger's counts)."""
    ready = _ready()
    if skipping_domains:
        ready.append(recipient_domain().not_in(SKIP_DOMAINS))
    if closing_zones:
        ready.append(CampaignRecipient.timezone.not_in(CLOSED_ZONES))
    picked = (
        select(CampaignRecipient.id)
        .where(*ready)
        .order_by(CampaignRecipient.id)
        .limit(CLAIM_LIMIT)
        .with_for_update(skip_locked=True)
        .cte("picked")
    )
    return (
        update(CampaignRecipient)
        .where(CampaignRecipient.id == picked.c.id)
        .values(claim_token=CLAIM_TOKEN, claimed_until=func.now() + CLAIM_LEASE)
        .returning(
            CampaignRecipient.id,
            CampaignRecipient.email,
            CampaignRecipient.name,
            CampaignRecipient.variables,
        )
    )


def _claim_pending(
    session: Session,
    campaign_id: uuid.UUID,
    now: datetime,
    limit: int,
    claim: Claim,
    skip_domains: list[str],
    closed_zones: list[str],
) -> list[RecipientView]:
    """Claim the next ready recipients by id, leaving out ``skip_domains`` (paced this
    minute) and ``closed_zones`` (recipients' zones outside working hours); rows another
    planner is claiming are skipped. One statement: the rows are picked, locked and
    claimed in one round trip."""
    if limit <= 0:
        return []
    params: dict[str, object] = {
        CAMPAIGN_ID.key: campaign_id,
        NOW.key: now,
        CLAIM_LIMIT.key: limit,
        CLAIM_TOKEN.key: claim.token,
        CLAIM_LEASE.key: claim.lease,
    }
    if skip_domains:
        params[SKIP_DOMAINS.key] = skip_domains
    if closed_zones:
        params[CLOSED_ZONES.key] = closed_zones
    statement = _claim_statement(bool(skip_domains), bool(closed_zones))
    rows = session.execute(
        statement, params, execution_options={"synchronize_session": False}
    ).all()
    return sorted(
        (
            RecipientView(id, email, name, dict(variables or {}))
            for id, email, name, variables in rows
        ),
        key=lambda recipient: recipient.id,
    )


# The last check before sending: a claimed recipient whose address was suppressed since the
# campaign was created (an unsubscribe, a hard bounce in another campaign) is failed with
# the reason, so the campaign's counts still add up; its claim ends (no quota is taken).
_FAIL_SUPPRESSED = text(
    """
    UPDATE mailer_campaignrecipient AS r
       SET status = 'failed', error = :prefix || s.reason,
           claim_token = NULL, claimed_until = NULL
      FROM mailer_suppression AS s
     WHERE r.id = ANY(:ids) AND lower(r.email) = s.address
 RETURNING r.id
    """
)


def _fail_suppressed(session: Session, recipient_ids: list[int]) -> set[int]:
    if not recipient_ids:
        return set()
    result = session.execute(
        _FAIL_SUPPRESSED, {"ids": recipient_ids, "prefix": SUPPRESSED_ERROR_PREFIX}
    )
    return {row[0] for row in result}


def _any_ready(
    session: Session, campaign_id: uuid.UUID, now: datetime, domains: list[str] | None = None
) -> bool:
    """Whether one of the campaign's recipients is ready at ``now`` (at one of ``domains``,
    when given)."""
    query = select(CampaignRecipient.id).where(*_ready())
    if domains is not None:
        query = query.where(recipient_domain().in_(domains))
    params = {CAMPAIGN_ID.key: campaign_id, NOW.key: now}
    return session.scalar(query.limit(1), params) is not None


def _next_ready(
    session: Session, campaign_id: uuid.UUID, now: datetime, claim: Claim
) -> datetime | None:
    """When a pending recipient none could be taken of now may be: the first 4xx retry
    time, or — when the rest are claimed by another live attempt — after one lease."""
    retry = session.scalar(
        select(func.min(CampaignRecipient.retry_after)).where(
            CampaignRecipient.campaign_id == campaign_id,
            CampaignRecipient.status == RecipientStatus.PENDING,
            CampaignRecipient.retry_after > now,
        )
    )
    if retry is not None:
        return retry
    claimed_elsewhere = session.scalar(
        select(func.count())
        .select_from(CampaignRecipient)
        .where(
            CampaignRecipient.campaign_id == campaign_id,
            CampaignRecipient.status == RecipientStatus.PENDING,
            live_claim(),
        )
    )
    return now + claim.lease if claimed_elsewhere else None


def first_retry_if_none_ready(
    session: Session, campaign_id: uuid.UUID, now: datetime, claim: Claim
) -> datetime | None:
    """When none of the campaign's pending recipients is ready at ``now``: when one may be
    (see ``_next_ready``). ``None`` when one is ready now, or none is pending."""
    if _any_ready(session, campaign_id, now):
        return None
    return _next_ready(session, campaign_id, now, claim)


# The queue row shows a live attempt: one statement, no row loaded (an ORM read and its
# flush were a round trip more a batch).
_MARK_PROCESSING = text(
    """
    UPDATE mailer_campaignqueue
       SET status = 'processing', started_at = :now, defer_reason = '', deferred_until = NULL
     WHERE campaign_id = :campaign_id AND status <> 'processing'
    """
)


def _mark_processing(session: Session, campaign_id: uuid.UUID, now: datetime) -> None:
    session.execute(_MARK_PROCESSING, {"campaign_id": campaign_id, "now": now})


def campaign_view(campaign: Campaign, account: GlobalMailAccount) -> CampaignView:
    return CampaignView(
        id=campaign.id,
        created_by_id=campaign.created_by_id,
        subject=campaign.subject,
        html_body=campaign.html_body,
        text_body=campaign.text_body,
        from_email=campaign.from_email or account.from_email,
        from_name=campaign.from_name or account.from_name,
    )


def account_view(account: GlobalMailAccount) -> AccountView:
    return AccountView(
        smtp_host=account.smtp_host,
        smtp_port=account.smtp_port,
        smtp_username=account.smtp_username,
        smtp_password=account.smtp_password,
        smtp_tls=account.smtp_tls,
        from_email=account.from_email,
        from_name=account.from_name,
        per_user_daily_limit=account.per_user_daily_limit,
        smtp_ca_pem=account.smtp_ca_pem,
        smtp_verify_tls=account.smtp_verify_tls,
    )


def plan_batch(
    session: Session,
    campaign_id: uuid.UUID,
    now: datetime,
    max_messages: int,
    settings: Settings,
    claim: Claim,
    *,
    skip_domains: list[str] | None = None,
    paced_until: datetime | None = None,
) -> BatchPlan:
    """Claim the recipients of the next batch for ``claim`` and reserve quota for them.

    Recipients in ``skip_domains`` (groups whose per-minute window is full) are left
    pending; if they are all that is ready, the plan says DOMAIN_PACED until ``paced_until``.
    The quota row is locked while it is read and decremented, so concurrent batches never
    take more than there is; with a daily limit the creator is locked for this transaction.
    """
    campaign, account = _campaign_and_account(session, campaign_id)
    shown, sender = campaign_view(campaign, account), account_view(account)
    if campaign.status != CampaignStatus.SENDING:  # paused or cancelled by an operator's SQL
        return BatchPlan(shown, sender, recipients=[], limited_by=BatchLimit.NOT_SENDING)
    if account.per_user_daily_limit > 0:
        _lock_creator(session, campaign)
    quota = latest_quota(session, for_update=True)
    allowance = _allowance(session, campaign, account, quota, now, max_messages, settings)
    skip = skip_domains or []
    closed = _closed_zones(session, campaign_id, now, account, settings)
    claimed = _claim_pending(session, campaign_id, now, allowance.count, claim, skip, closed)
    suppressed = _fail_suppressed(session, [row.id for row in claimed])
    rows = [row for row in claimed if row.id not in suppressed]
    limited_by = allowance.limited_by if len(claimed) < max_messages else BatchLimit.NONE
    retry_at = None
    if rows:
        if quota is not None:
            quota.emails_available -= len(rows)
        _mark_processing(session, campaign_id, now)
    elif allowance.count > 0 and not suppressed:
        limited_by, retry_at = _why_nothing_is_ready(
            session, campaign_id, now, claim, skip, paced_until, limited_by
        )
    return BatchPlan(
        shown,
        sender,
        recipients=rows,
        limited_by=limited_by,
        retry_at=retry_at,
        suppressed=len(suppressed),
    )


def _closed_zones(
    session: Session,
    campaign_id: uuid.UUID,
    now: datetime,
    account: GlobalMailAccount,
    settings: Settings,
) -> list[str]:
    """With recipient time zones: the ``timezone`` values of pending recipients whose
    working hours do not hold at ``now`` (as stored: a name that is not a zone is read as
    MAILER_TIMEZONE)."""
    if not settings.recipient_timezones:
        return []
    hours = working_hours(limits_for(settings, account, now))
    stored = stored_pending_zones(session, campaign_id)
    return [zone for zone in stored if not is_working_time(now, in_zone(hours, zone))]


def _campaign_and_account(
    session: Session, campaign_id: uuid.UUID
) -> tuple[Campaign, GlobalMailAccount]:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignRefused(f"no campaign {campaign_id}")
    account = get_account(session)
    if account is None:
        raise CampaignRefused("no mail account: configure it with `mailer account set`")
    return campaign, account


def _why_nothing_is_ready(
    session: Session,
    campaign_id: uuid.UUID,
    now: datetime,
    claim: Claim,
    skip: list[str],
    paced_until: datetime | None,
    limited_by: BatchLimit,
) -> tuple[BatchLimit, datetime | None]:
    """The batch could send but found no recipient: the ones left are in paced domains
    (until ``paced_until``), or wait for their 4xx retry time (until the first)."""
    if skip and _any_ready(session, campaign_id, now, skip):
        return BatchLimit.DOMAIN_PACED, paced_until
    retry_at = _next_ready(session, campaign_id, now, claim)
    return (BatchLimit.RETRY_WAIT if retry_at is not None else limited_by), retry_at


_RELEASE = text(
    """
    WITH released AS (
        UPDATE mailer_campaignrecipient
           SET claim_token = NULL, claimed_until = NULL
         WHERE claim_token = :token
     RETURNING id
    )
    UPDATE mailer_smtpbzquota
       SET emails_available = emails_available + (SELECT count(*) FROM released) - :unrecorded
     WHERE id = (SELECT max(id) FROM mailer_smtpbzquota)
    """
)


_BATCH_OVER = text(
    """
    UPDATE mailer_campaignqueue SET status = 'pending', started_at = NULL
     WHERE campaign_id = :campaign_id AND status = 'processing'
    """
)


def release_claims(engine: Engine, token: str, *, campaign_id: uuid.UUID, unrecorded: int) -> None:
    """The batch is over: its claims end and their quota comes back, and the queue row is
    no longer ``processing`` (only a live attempt shows it), in one transaction.

    Sent recipients settled their claim when they were recorded. ``unrecorded`` messages
    the server accepted but whose "sent" could not be committed keep their quota used
    (they stay pending: the ledger does not know they went, so they go again later, with
    the same Message-ID).
    """
    with engine.begin() as conn:
        conn.execute(_RELEASE, {"token": token, "unrecorded": unrecorded})
        conn.execute(_BATCH_OVER, {"campaign_id": campaign_id})


def renew_claims(conn: Connection, token: str, lease: timedelta) -> None:
    """Extend the lease of every recipient ``token`` holds (the attempt is alive)."""
    conn.execute(
        update(CampaignRecipient)
        .where(CampaignRecipient.claim_token == token)
        .values(claimed_until=func.now() + lease)
    )
    conn.commit()

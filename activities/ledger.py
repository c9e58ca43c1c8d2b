"""The database side of sending: snapshots, start checks, state mirrors, per-message commits.

Plain synchronous functions over SQLAlchemy sessions; the activity layer runs them in
threads. "Now" is always a parameter (the workflow's clock), never the wall clock.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    DateTime,
    Integer,
    ScalarSelect,
    Select,
    and_,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from activities.calendar_days import special_dates
from activities.quota import ProviderQuota
from db.models import (
    PROVIDER_SMTP_GLOBAL,
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
from db.queries import get_account, latest_quota, recipient_counts_of
from mailer.core.settings import Settings
from mailer.core.working_days import parse_working_days
from workflows.contracts import Limits, Snapshot
from workflows.requests import CampaignRow
from workflows.states import SELF_HELD_REASONS
from workflows.working_hours import clock_hour_bounds, is_zone, local_day_bounds


class CampaignRefused(Exception):
    """The campaign cannot be started; the message says why (shown to the operator)."""


def limits_for(
    settings: Settings, account: GlobalMailAccount | None, now: datetime | None = None
) -> Limits:
    return limits_with(settings, account.per_user_daily_limit if account else 0, now)


def limits_with(settings: Settings, per_user_daily_limit: int, now: datetime | None) -> Limits:
    today = (now or datetime.now(UTC)).astimezone(ZoneInfo(settings.timezone)).date()
    closed, opened = special_dates(settings.holidays, settings.holidays_file, today)
    return Limits(
        timezone=settings.timezone,
        working_hours_start=settings.working_hours_start,
        working_hours_end=settings.working_hours_end,
        rate_per_hour=settings.rate_per_hour,
        per_user_daily_limit=per_user_daily_limit,
        circuit_breaker_threshold=settings.circuit_breaker_threshold,
        transient_retry_delay_minutes=settings.transient_retry_delay_minutes,
        send_batch_size=settings.send_batch_size,
        continue_as_new_events=settings.continue_as_new_events,
        send_heartbeat_timeout_seconds=settings.send_heartbeat_timeout_seconds,
        send_batch_max_attempts=settings.send_batch_max_attempts,
        working_days=list(parse_working_days(settings.working_days)),
        closed_dates=closed,
        open_dates=opened,
        recipient_timezones=settings.recipient_timezones,
    )


# --- counts ---------------------------------------------------------------------------------
# Each count is a statement builder, so one round trip can ask several (the snapshot, a
# batch's allowance) and the functions below ask one. "This" campaign is an alias of
# mailer_campaign the outer statement selects by id; a builder's subquery correlates to it.
#
# The statements are built once, with bound parameters for what varies (the campaign, the
# day's and the hour's bounds): building an ORM statement with an alias cost the worker more
# CPU than executing it (bench/round_trips.py), and a statement object built once also keeps
# its cache key, so SQLAlchemy finds its compiled form without walking it again.

CAMPAIGN_ID = bindparam("the_campaign_id", type_=Campaign.__table__.c.id.type)
# The hourly rate, where the count of campaigns sharing it stops (``_active_campaigns``).
RATE_CAP = bindparam("the_rate_cap", type_=Integer())
DAY_START = bindparam("day_start", type_=DateTime(timezone=True))
DAY_END = bindparam("day_end", type_=DateTime(timezone=True))
HOUR_START = bindparam("hour_start", type_=DateTime(timezone=True))
HOUR_END = bindparam("hour_end", type_=DateTime(timezone=True))


def day_of(now: datetime, timezone: str) -> dict[str, datetime]:
    """DAY_START and DAY_END: the local calendar day of ``now``."""
    start, end = local_day_bounds(now, timezone)
    return {DAY_START.key: start, DAY_END.key: end}


def hour_of(now: datetime, timezone: str) -> dict[str, datetime]:
    """HOUR_START and HOUR_END: the local clock hour of ``now``."""
    start, end = clock_hour_bounds(now, timezone)
    return {HOUR_START.key: start, HOUR_END.key: end}


def this_campaign() -> type[Campaign]:
    """The alias a combined statement selects its campaign through."""
    return aliased(Campaign, name="this")


def _of_the_creator(
    this: type[Campaign], campaign_id: InstrumentedAttribute[uuid.UUID]
) -> ColumnElement[bool]:
    """Rows of campaigns by this campaign's creator (of this campaign alone without one);
    the statement joins ``Campaign`` to the rows' ``campaign_id``."""
    return or_(
        Campaign.created_by_id == this.created_by_id,
        and_(this.created_by_id.is_(None), campaign_id == this.id),
    )


def sent_today_of(this: type[Campaign]) -> ScalarSelect[int]:
    """The creator's successful sends in the day DAY_START..DAY_END, all campaigns (the
    seed's SQL)."""
    return (
        select(func.count())
        .select_from(SendLog)
        .join(Campaign, Campaign.id == SendLog.campaign_id)
        .where(
            SendLog.provider == PROVIDER_SMTP_GLOBAL,
            SendLog.status == SendLogStatus.SENT.value,
            SendLog.created_at >= DAY_START,
            SendLog.created_at < DAY_END,
            _of_the_creator(this, SendLog.campaign_id),
        )
        .scalar_subquery()
    )


def claimed_by_the_creator_of(this: type[Campaign]) -> ScalarSelect[int]:
    """The creator's recipients claimed by live attempts and still pending (may go today)."""
    return (
        select(func.count())
        .select_from(CampaignRecipient)
        .join(Campaign, Campaign.id == CampaignRecipient.campaign_id)
        .where(
            CampaignRecipient.status == RecipientStatus.PENDING,
            live_claim(),
            _of_the_creator(this, CampaignRecipient.campaign_id),
        )
        .scalar_subquery()
    )


def _active_campaigns() -> Select[int]:
    """Campaigns competing for the hourly window: sending, not held back by their own
    daily limit or transient errors. Counted up to RATE_CAP, the hourly rate: from there
    on every campaign's fair share is one message (:func:`workflows.gates.fair_share`), so
    a larger count changes nothing, and at the seed's 100 an hour a CRM with thousands
    sending reads 100 rows instead of every one of them."""
    competing = (
        select(literal(1))
        .select_from(Campaign)
        .join(CampaignQueue, CampaignQueue.campaign_id == Campaign.id)
        .where(
            Campaign.status == CampaignStatus.SENDING.value,
            CampaignQueue.defer_reason.not_in(SELF_HELD_REASONS),
        )
        .limit(RATE_CAP)
        .subquery("competing")
    )
    return select(func.count()).select_from(competing)


def _sends_in_hour(
    campaign_id: BindParameter[uuid.UUID] | InstrumentedAttribute[uuid.UUID] | None,
) -> Select[int]:
    """Messages handed to the server in the hour HOUR_START..HOUR_END (by one campaign, or
    all: what the Redis window of that hour counts)."""
    query = (
        select(func.count())
        .select_from(SendLog)
        .where(
            SendLog.provider == PROVIDER_SMTP_GLOBAL,  # test emails do not count
            SendLog.created_at >= HOUR_START,
            SendLog.created_at < HOUR_END,
        )
    )
    if campaign_id is not None:
        query = query.where(SendLog.campaign_id == campaign_id)
    return query


def _newest(
    column: InstrumentedAttribute[int], row_id: InstrumentedAttribute[int]
) -> ScalarSelect[int | None]:
    """``column`` of a singleton table's newest row, as the playbook reads those tables
    (``ORDER BY id DESC LIMIT 1``, like ``latest_quota`` and ``get_account``)."""
    return select(column).order_by(row_id.desc()).limit(1).scalar_subquery()


def _quota_available() -> ScalarSelect[int | None]:
    return _newest(SmtpBzQuota.emails_available, SmtpBzQuota.id)


def _daily_limit() -> ScalarSelect[int | None]:
    return _newest(GlobalMailAccount.per_user_daily_limit, GlobalMailAccount.id)


@functools.cache
def _sent_today_statement() -> Select[int]:
    this = this_campaign()
    return select(sent_today_of(this)).where(this.id == CAMPAIGN_ID)


@functools.cache
def _sends_in_hour_statement(by_campaign: bool) -> Select[int]:
    return _sends_in_hour(CAMPAIGN_ID if by_campaign else None)


def sent_today(session: Session, campaign: Campaign, now: datetime, timezone: str) -> int:
    """The creator's successful sends in today's local day, all campaigns (the seed's SQL)."""
    params = {CAMPAIGN_ID.key: campaign.id, **day_of(now, timezone)}
    return int(session.scalar(_sent_today_statement(), params) or 0)


def quota_available(session: Session) -> int:
    return int(session.scalar(select(_quota_available())) or 0)


def active_campaigns_now() -> ScalarSelect[int]:
    return _active_campaigns().scalar_subquery()


def sends_this_hour(
    session: Session, now: datetime, timezone: str, campaign_id: uuid.UUID | None = None
) -> int:
    """Messages handed to the server in the clock hour of ``now`` (by one campaign, or all)."""
    params: dict[str, object] = {**hour_of(now, timezone)}
    if campaign_id is not None:
        params[CAMPAIGN_ID.key] = campaign_id
    return int(session.scalar(_sends_in_hour_statement(campaign_id is not None), params) or 0)


def sends_this_hour_by(this: type[Campaign]) -> ScalarSelect[int]:
    """This campaign's messages handed to the server in the hour HOUR_START..HOUR_END."""
    return _sends_in_hour(this.id).scalar_subquery()


@functools.cache
def _snapshot_statement() -> Select[Any]:
    """The snapshot's one statement: CAMPAIGN_ID, DAY_START, DAY_END."""
    this = this_campaign()
    counts = recipient_counts_of(this.id).lateral("counts")
    return (
        select(
            this.status,
            counts.c.pending,
            counts.c.sent,
            counts.c.failed,
            _daily_limit().label("daily_limit"),
            _quota_available().label("quota_available"),
            # Today's sends count only against a daily limit; without one they are not
            # read (CASE runs its subquery only when taken): at a large CRM they are the
            # statement's biggest scan, and every turn of the loop takes a snapshot.
            case((_daily_limit() > 0, sent_today_of(this)), else_=0).label("sent_today"),
            # The campaigns sharing the hour only size a batch, and with nothing pending
            # there is none: the count is a scan of every campaign sending (~20 ms at
            # 10,000), and a campaign's last snapshots, after its last batch, skip it.
            case((counts.c.pending > 0, active_campaigns_now()), else_=0).label("active_campaigns"),
        )
        .select_from(this)
        .join(counts, true())
        .where(this.id == CAMPAIGN_ID)
    )


def take_snapshot(
    session: Session, campaign_id: uuid.UUID, now: datetime, settings: Settings
) -> Snapshot:
    """What the workflow's gates decide on, read in one statement (one round trip: the
    loop takes one per turn, and the batch one more)."""
    params = {
        CAMPAIGN_ID.key: campaign_id,
        RATE_CAP.key: settings.rate_per_hour,
        **day_of(now, settings.timezone),
    }
    row = session.execute(_snapshot_statement(), params).one_or_none()
    if row is None:
        raise CampaignRefused(f"no campaign {campaign_id}")
    limits = limits_with(settings, row.daily_limit or 0, now)
    return Snapshot(
        limits=limits,
        quota_available=row.quota_available or 0,
        sent_today_by_creator=row.sent_today,
        active_campaigns=row.active_campaigns,
        pending=row.pending,
        sent=row.sent,
        failed=row.failed,
        campaign_status=row.status,
        pending_zones=pending_zones(session, campaign_id) if limits.recipient_timezones else [],
    )


def pending_zones(session: Session, campaign_id: uuid.UUID) -> list[str]:
    """The distinct time zones of a campaign's pending recipients ('' for MAILER_TIMEZONE,
    which a stored name that is not a zone also means)."""
    stored = stored_pending_zones(session, campaign_id)
    return sorted({zone if is_zone(zone) else "" for zone in stored})


def stored_pending_zones(session: Session, campaign_id: uuid.UUID) -> list[str]:
    """The distinct ``timezone`` values of a campaign's pending recipients, as stored."""
    query = (
        select(CampaignRecipient.timezone)
        .where(
            CampaignRecipient.campaign_id == campaign_id,
            CampaignRecipient.status == RecipientStatus.PENDING,
        )
        .distinct()
        .order_by(CampaignRecipient.timezone)
    )
    return list(session.scalars(query))


@dataclass(frozen=True)
class StartCheck:
    """A campaign that may start: its status before the start (``sending`` for a start that
    already went through) and its creator, whose start throttle counts it."""

    status: str
    created_by_id: int | None


# The campaign locked for its start, with its size, in one round trip.
_START_CHECK = text(
    """
    SELECT c.status, c.created_by_id,
           (SELECT count(*) FROM mailer_campaignrecipient AS r
             WHERE r.campaign_id = c.id) AS recipients
      FROM mailer_campaign AS c
     WHERE c.id = :campaign_id
       FOR UPDATE OF c
    """
)


def start_campaign(
    session: Session, campaign_id: uuid.UUID, now: datetime, settings: Settings
) -> StartCheck:
    """Check the campaign can start, and lock it until the caller marks it; idempotent for
    a retried start (a ``sending`` campaign passes).

    Raises :class:`CampaignRefused` with the reason otherwise. The start throttle is the
    caller's (it lives in Redis).
    """
    row = session.execute(_START_CHECK, {"campaign_id": campaign_id}).one_or_none()
    if row is None:
        raise CampaignRefused(f"no campaign {campaign_id}")
    check = StartCheck(row.status, row.created_by_id)
    if row.status == CampaignStatus.SENDING.value:
        return check  # this start already went through (an activity retry)
    if row.status != CampaignStatus.READY.value:
        raise CampaignRefused(f"campaign {campaign_id} is {row.status}, not ready to start")
    if row.recipients > settings.max_campaign_recipients:
        raise CampaignRefused(
            f"campaign {campaign_id} has {row.recipients} recipients, more than "
            f"MAILER_MAX_CAMPAIGN_RECIPIENTS={settings.max_campaign_recipients}"
        )
    return check


# A queue row made ``pending`` with no defer reason and ``:deferred_until`` (a start, ``:start``,
# also clears its breaker count and times), or added with every column named (the CRM's
# Django tables have no defaults in the database). With ``:start`` the campaign row is marked
# ``sending`` too (a scheduled start leaves it ``ready``).
_PENDING_QUEUE = text(
    """
    WITH given AS (  -- each value once, typed: a parameter used twice takes one type
        SELECT CAST(:campaign_id AS uuid) AS campaign_id,
               CAST(:now AS timestamptz) AS now,
               CAST(:start AS boolean) AS start,
               CAST(:deferred_until AS timestamptz) AS deferred_until
    ),
    started AS (
        UPDATE mailer_campaign AS c
           SET status = 'sending', started_at = coalesce(c.started_at, given.now),
               updated_at = now()
          FROM given
         WHERE c.id = given.campaign_id AND given.start
    ),
    queue_written AS (
        UPDATE mailer_campaignqueue AS q
           SET status = 'pending',
               defer_reason = '',
               deferred_until = given.deferred_until,
               consecutive_transient_errors =
                   CASE WHEN given.start THEN 0 ELSE q.consecutive_transient_errors END,
               started_at = CASE WHEN given.start THEN NULL ELSE q.started_at END,
               finished_at = CASE WHEN given.start THEN NULL ELSE q.finished_at END
          FROM given
         WHERE q.campaign_id = given.campaign_id
     RETURNING q.campaign_id
    )
    INSERT INTO mailer_campaignqueue (campaign_id, status, defer_reason, deferred_until,
                                      consecutive_transient_errors, last_error, started_at,
                                      queued_at, finished_at)
    SELECT given.campaign_id, 'pending', '', given.deferred_until, 0, '', NULL, given.now, NULL
      FROM given
     WHERE NOT EXISTS (SELECT FROM queue_written)
    """
)


def mark_scheduled(
    session: Session, campaign_id: uuid.UUID, start_at: datetime, now: datetime
) -> None:
    """A scheduled start: the campaign stays ``ready`` (it has not started); its queue row
    is ``pending`` with the start time in ``deferred_until`` and no defer reason."""
    session.execute(
        _PENDING_QUEUE,
        {"campaign_id": campaign_id, "now": now, "start": False, "deferred_until": start_at},
    )


def mark_started(session: Session, campaign_id: uuid.UUID, now: datetime) -> None:
    """The campaign ``sending`` since ``now`` (or since its first start); its queue row
    ``pending`` afresh: no deferral, no transient errors counted, no times."""
    session.execute(
        _PENDING_QUEUE,
        {"campaign_id": campaign_id, "now": now, "start": True, "deferred_until": None},
    )


# The campaign row is locked and compared first (the compare-and-set), written only when it
# changes (a deferral's record leaves a sending campaign as it is), and its queue row updated,
# or inserted for a campaign that has none. One statement, one round trip: a record comes
# with every deferral and every finish. The CRM's Django tables have no column defaults in
# the database, so the insert names every column.
_RECORD_STATE = text(
    """
    WITH given AS (  -- each value once, typed: a parameter used twice takes one type
        SELECT CAST(:campaign_id AS uuid) AS campaign_id,
               CAST(:expected AS text[]) AS expected,
               CAST(:campaign_status AS text) AS campaign_status,
               CAST(:finished AS boolean) AS finished,
               CAST(:now AS timestamptz) AS now,
               CAST(:queue_status AS text) AS queue_status,
               CAST(:defer_reason AS text) AS defer_reason,
               CAST(:deferred_until AS timestamptz) AS deferred_until,
               CAST(:errors AS integer) AS errors,
               CAST(:last_error AS text) AS last_error
    ),
    campaign AS (
        SELECT c.id, c.status
          FROM mailer_campaign AS c, given
         WHERE c.id = given.campaign_id
           AND (cardinality(given.expected) = 0 OR c.status = ANY(given.expected))
           FOR UPDATE OF c
    ),
    campaign_written AS (
        UPDATE mailer_campaign AS c
           SET status = given.campaign_status,
               finished_at = CASE WHEN given.finished THEN given.now ELSE c.finished_at END,
               updated_at = now()
          FROM campaign, given
         WHERE c.id = campaign.id
           AND (campaign.status <> given.campaign_status OR given.finished)
    ),
    queue_written AS (
        UPDATE mailer_campaignqueue AS q
           SET status = given.queue_status,
               defer_reason = given.defer_reason,
               deferred_until = given.deferred_until,
               consecutive_transient_errors = given.errors,
               last_error = given.last_error,
               started_at = CASE WHEN given.queue_status <> 'processing' THEN NULL
                                 WHEN q.status <> 'processing' THEN given.now
                                 ELSE q.started_at END,
               finished_at = CASE WHEN given.finished THEN given.now END
          FROM campaign, given
         WHERE q.campaign_id = campaign.id
     RETURNING q.campaign_id
    ),
    queue_added AS (
        INSERT INTO mailer_campaignqueue (campaign_id, status, defer_reason, deferred_until,
                                          consecutive_transient_errors, last_error, started_at,
                                          queued_at, finished_at)
        SELECT campaign.id, given.queue_status, given.defer_reason, given.deferred_until,
               given.errors, given.last_error,
               CASE WHEN given.queue_status = 'processing' THEN given.now END,
               given.now,
               CASE WHEN given.finished THEN given.now END
          FROM campaign, given
         WHERE NOT EXISTS (SELECT FROM queue_written)
    )
    SELECT count(*) FROM campaign
    """
)


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
    expected_statuses: Sequence[str] = (),
) -> bool:
    """Mirror the workflow's state so the playbook's SQL tells the truth.

    Compare-and-set: with ``expected_statuses``, nothing is written unless the campaign's
    status is one of them now (the row is locked while it is read). Returns whether it
    was written (``False`` also for a campaign that is gone).
    """
    finished = campaign_status in (CampaignStatus.SENT.value, CampaignStatus.CANCELLED.value)
    written = session.execute(
        _RECORD_STATE,
        {
            "campaign_id": campaign_id,
            "expected": list(expected_statuses),
            "campaign_status": campaign_status,
            "finished": finished,
            "now": now,
            "queue_status": queue_status,
            "defer_reason": defer_reason,
            "deferred_until": deferred_until,
            "errors": consecutive_transient_errors,
            "last_error": last_error,
        },
    ).scalar_one()
    return bool(written)


def campaign_status_now(conn: Connection, campaign_id: uuid.UUID) -> str:
    """``mailer_campaign.status`` now ('' if the campaign is gone)."""
    status = conn.execute(select(Campaign.status).where(Campaign.id == campaign_id)).scalar()
    conn.commit()
    return status or ""


# --- one batch -----------------------------------------------------------------------------


# In the driver's own parameter style: the batch's asynchronous connection runs it as it is
# (activities/sent_marks.py), a SQLAlchemy connection through ``exec_driver_sql``.
RECORD_SENT_SQL = """
    WITH recipient AS (
        UPDATE mailer_campaignrecipient
           SET status = 'sent', message_id = %(message_id)s, sent_at = %(now)s, error = '',
               claim_token = NULL, claimed_until = NULL
         WHERE id = %(recipient_id)s AND status = 'pending'
     RETURNING id, campaign_id, email
    )
    INSERT INTO mailer_sendlog (campaign_id, recipient_id, email, provider, status, message_id,
                                smtp_code, error, created_at)
    SELECT campaign_id, id, email, 'smtp_global', 'sent', %(message_id)s, 250, '', %(now)s
      FROM recipient
    """


def record_sent(conn: Connection, recipient_id: int, message_id: str, now: datetime) -> None:
    """After the server's 250: recipient sent + send log, committed at once (the quota was
    taken when the batch was planned). The send path writes it from the event loop
    (:class:`activities.sent_marks.SentMarks`); this is the same write on ``conn``."""
    params = {"recipient_id": recipient_id, "message_id": message_id, "now": now}
    conn.exec_driver_sql(RECORD_SENT_SQL, params)
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
    # The mailbox does not exist: the address goes on the suppression list too.
    hard_bounce: bool = False


# Each ledger write after a message is ONE statement: on the batch's autocommit connection
# it is its own transaction (one round trip), and it is atomic as a whole.
_RECORD_FAILED = text(
    """
    WITH recipient AS (
        UPDATE mailer_campaignrecipient
           SET status = 'failed', error = :error, message_id = :message_id,
               claim_token = NULL, claimed_until = NULL
         WHERE id = :recipient_id AND status = 'pending'
     RETURNING id, campaign_id, email
    ), bounced AS (
        INSERT INTO mailer_suppression (address, reason, campaign_id, note, created_at)
        SELECT lower(email), 'hard_bounce', campaign_id, :error, :at
          FROM recipient
         WHERE :hard_bounce
        ON CONFLICT (address) DO NOTHING
    )
    INSERT INTO mailer_sendlog (campaign_id, recipient_id, email, provider, status, message_id,
                                smtp_code, error, created_at)
    SELECT campaign_id, id, email, 'smtp_global', 'failed', :message_id, :code, :error, :at
      FROM recipient
    """
)

# Appended to an UPDATE … RETURNING named ``recipient``: a recipient it left ``failed`` gets
# its send-log row (like any failure), and the statement answers whether one did.
_FAILED_FOR_GOOD = """, failure AS (
        INSERT INTO mailer_sendlog (campaign_id, recipient_id, email, provider, status,
                                    message_id, smtp_code, error, created_at)
        SELECT campaign_id, id, email, 'smtp_global', 'failed', :message_id, :code, :error, :at
          FROM recipient
         WHERE status = 'failed'
     RETURNING id
    )
    SELECT count(*) > 0 FROM failure
"""

_RECORD_DEFERRED = text(
    """
    WITH recipient AS (
        UPDATE mailer_campaignrecipient
           SET attempts = attempts + 1,
               retry_after = :at + (CAST(:schedule AS double precision[]))[
                   least(attempts + 1, cardinality(CAST(:schedule AS double precision[])))
               ] * interval '1 minute',
               deferred_since = coalesce(deferred_since, :at),
               error = :error,
               message_id = :message_id,
               status = CASE
                   WHEN attempts + 1 >= :max_attempts
                     OR coalesce(deferred_since, :at) <= :at - CAST(:max_age AS interval)
                   THEN 'failed' ELSE 'pending' END
         WHERE id = :recipient_id AND status = 'pending'
     RETURNING id, campaign_id, email, status
    )"""
    + _FAILED_FOR_GOOD
)

# The reply to the final dot never came: tried once more (the same Message-ID) after
# ``retry_after``; a second time it fails, so the message is never sent a third time.
_RECORD_UNKNOWN = text(
    """
    WITH recipient AS (
        UPDATE mailer_campaignrecipient
           SET retry_after = :retry_after,
               outcome_unknown_at = coalesce(outcome_unknown_at, :at),
               error = :error,
               message_id = :message_id,
               status = CASE WHEN outcome_unknown_at IS NULL THEN 'pending' ELSE 'failed' END
         WHERE id = :recipient_id AND status = 'pending'
     RETURNING id, campaign_id, email, status
    )"""
    + _FAILED_FOR_GOOD
)

# One domain refuses for now: its other recipients in the campaign wait too (not tried, so
# no attempt is spent); their wait counts towards the maximum age.
_BACK_OFF_DOMAIN = text(
    """
    UPDATE mailer_campaignrecipient
       SET retry_after = :until,
           deferred_since = coalesce(deferred_since, :at)
     WHERE campaign_id = :campaign_id
       AND status = 'pending'
       AND lower(substring(email from '@([^@]*)$')) = :domain
       AND (retry_after IS NULL OR retry_after < :until)
    """
)


def _refusal_params(refusal: Refusal) -> dict[str, Any]:
    return {
        "recipient_id": refusal.recipient_id,
        "error": refusal.error,
        "message_id": refusal.message_id,
        "code": refusal.code,
        "at": refusal.at,
        "hard_bounce": refusal.hard_bounce,
    }


def record_failed(conn: Connection, refusal: Refusal) -> None:
    """A permanent refusal: the recipient is failed (never retried) with a send-log row;
    committed."""
    conn.execute(_RECORD_FAILED, _refusal_params(refusal))
    conn.commit()


@dataclass(frozen=True)
class RetryPolicy:
    """How long a temporarily refused recipient waits, and when it fails instead."""

    schedule_minutes: Sequence[float]  # the wait after the 1st, 2nd... refusal; then the last
    max_attempts: int
    max_age: timedelta  # since its first refusal of this wait

    @classmethod
    def of(cls, settings: Settings) -> RetryPolicy:
        return cls(
            settings.recipient_retry_schedule,
            settings.recipient_max_attempts,
            timedelta(hours=settings.recipient_max_age_hours),
        )


def record_deferred(conn: Connection, refusal: Refusal, policy: RetryPolicy) -> bool:
    """A 4xx about this recipient: it waits the schedule's next step, or fails after its last
    attempt or past the maximum age (with a send-log row, like any failure). Committed.
    True if it failed for good."""
    params = _refusal_params(refusal) | {
        "schedule": list(policy.schedule_minutes),
        "max_attempts": policy.max_attempts,
        "max_age": policy.max_age,
    }
    failed = bool(conn.execute(_RECORD_DEFERRED, params).scalar())
    conn.commit()
    return failed


def record_unknown(conn: Connection, refusal: Refusal, *, retry_after: datetime) -> bool:
    """The reply to the message's final dot never came: the recipient is tried once more
    after ``retry_after``; the second time it fails instead. Committed. True if it failed."""
    params = _refusal_params(refusal) | {"retry_after": retry_after}
    failed = bool(conn.execute(_RECORD_UNKNOWN, params).scalar())
    conn.commit()
    return failed


def back_off_domain(
    conn: Connection, campaign_id: uuid.UUID, domain: str, *, until: datetime, at: datetime
) -> int:
    """The campaign's pending recipients at ``domain`` wait until ``until``. Committed.
    Returns how many were held back."""
    params = {"campaign_id": campaign_id, "domain": domain.lower(), "until": until, "at": at}
    held = conn.execute(_BACK_OFF_DOMAIN, params).rowcount
    conn.commit()
    return int(held)


def live_claim() -> ColumnElement[bool]:
    """A recipient claimed by a send attempt whose lease has not run out."""
    return and_(
        CampaignRecipient.claim_token.is_not(None), CampaignRecipient.claimed_until > func.now()
    )


def claimed_in_flight(session: Session) -> int:
    """Recipients claimed by live attempts, all campaigns: quota reserved, not yet settled."""
    query = select(func.count()).select_from(CampaignRecipient).where(live_claim())
    return int(session.scalar(query) or 0)


def store_quota(
    session: Session, now: datetime, numbers: ProviderQuota | None, *, error: str = ""
) -> int:
    """Write a quota sync's result; without numbers (an error) the old ones stay.
    Returns emails_available."""
    quota = latest_quota(session, for_update=True)
    if quota is None:
        quota = SmtpBzQuota(emails_available=0, emails_limit=0)
        session.add(quota)
    if numbers is not None:
        # Claims in flight were taken from the quota already; the provider has not counted
        # them yet, and their batches give back what they do not send.
        quota.emails_available = numbers.quota - claimed_in_flight(session)
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


def _rows(session: Session, where: ColumnElement[bool]) -> list[CampaignRow]:
    pending = (
        select(func.count())
        .select_from(CampaignRecipient)
        .where(
            CampaignRecipient.campaign_id == Campaign.id,
            CampaignRecipient.status == RecipientStatus.PENDING,
        )
        .scalar_subquery()
    )
    rows = session.execute(
        select(Campaign.id, Campaign.status, CampaignQueue, pending)
        .outerjoin(CampaignQueue, CampaignQueue.campaign_id == Campaign.id)
        .where(where)
    ).all()
    return [
        CampaignRow(
            campaign_id=str(campaign_id),
            status=status,
            queue_status=queue.status if queue else "",
            defer_reason=queue.defer_reason if queue else "",
            deferred_until=queue.deferred_until if queue else None,
            consecutive_transient_errors=queue.consecutive_transient_errors if queue else 0,
            last_error=queue.last_error if queue else "",
            pending=int(count or 0),
        )
        for campaign_id, status, queue, count in rows
    ]


def active_campaigns(session: Session) -> list[CampaignRow]:
    """Campaigns sending or paused, with their queue rows."""
    return _rows(session, Campaign.status.in_((CampaignStatus.SENDING, CampaignStatus.PAUSED)))


def campaign_rows(session: Session, campaign_ids: Sequence[str]) -> list[CampaignRow]:
    """These campaigns' rows (ids of campaigns that no longer exist are left out)."""
    ids = [uuid.UUID(campaign_id) for campaign_id in campaign_ids]
    return _rows(session, Campaign.id.in_(ids)) if ids else []


_TAKE_REQUESTS = text(
    """
    DELETE FROM mailer_request
     WHERE id IN (SELECT id FROM mailer_request ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)
    RETURNING campaign_id
    """
)


def take_requests(session: Session, limit: int) -> list[str]:
    """The campaigns the CRM's writes named since the last look (each once, oldest first);
    taken, so two dispatchers never act on one request twice."""
    ids = [str(row[0]) for row in session.execute(_TAKE_REQUESTS, {"limit": limit})]
    return list(dict.fromkeys(ids))


def _queue(session: Session, campaign_id: uuid.UUID) -> CampaignQueue | None:
    return session.scalar(select(CampaignQueue).where(CampaignQueue.campaign_id == campaign_id))


def release_processing(session: Session, campaign_id: uuid.UUID) -> None:
    """The playbook's reset of a stuck queue row: back to pending, started_at cleared."""
    queue = _queue(session, campaign_id)
    if queue is not None and queue.status == QueueStatus.PROCESSING.value:
        queue.status = QueueStatus.PENDING.value
        queue.started_at = None


def api_key(session: Session) -> str:
    account = get_account(session)
    return account.smtp_bz_api_key if account else ""

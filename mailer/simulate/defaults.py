"""Defaults the simulation takes from the real database (read-only): the account's daily
limit, and with ``--campaign`` that campaign's pending count and the current quota."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, create_engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from db.models import Campaign, CampaignQueue, CampaignRecipient, GlobalMailAccount, SmtpBzQuota
from db.queries import recipient_domain
from mailer.core.errors import InputError
from mailer.core.settings import Settings


@dataclass(frozen=True)
class RealDefaults:
    daily_limit: int | None = None
    quota: int | None = None
    pending: int | None = None
    # The source campaign's pending recipients by domain (the most common first).
    domains: tuple[tuple[str, int], ...] = ()
    # With MAILER_RECIPIENT_TIMEZONES: its pending recipients by time zone.
    zones: tuple[tuple[str, int], ...] = ()
    # Its scheduled start, if it has one not reached yet: the simulation starts there.
    scheduled_for: datetime | None = None
    problem: str = ""  # why the database could not be read, if it could not


def read_defaults(settings: Settings, campaign_id: str | None) -> RealDefaults:
    """Read what the options default to; a missing campaign is an :class:`InputError`."""
    parsed = None
    if campaign_id is not None:
        try:
            parsed = uuid.UUID(campaign_id)
        except ValueError:
            raise InputError([f"--campaign: {campaign_id!r} is not a campaign UUID"]) from None
    engine = create_engine(settings.sqlalchemy_url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            account = conn.execute(
                select(GlobalMailAccount.per_user_daily_limit)
                .order_by(GlobalMailAccount.id.desc())
                .limit(1)
            ).scalar()
            if parsed is None:
                return RealDefaults(daily_limit=account or 0)
            return _campaign_defaults(conn, parsed, settings, daily_limit=account or 0)
    except SQLAlchemyError as exc:
        if parsed is not None:
            raise InputError(
                [f"--campaign: cannot read the database to find it ({type(exc).__name__})"]
            ) from None
        return RealDefaults(problem=f"database not readable ({type(exc).__name__})")
    finally:
        engine.dispose()


def _campaign_defaults(
    conn: Connection, campaign_id: uuid.UUID, settings: Settings, daily_limit: int
) -> RealDefaults:
    """The campaign's pending count, domain and zone mix, its scheduled start, and the
    quota now."""
    row = conn.execute(
        select(Campaign.status, Campaign.started_at, CampaignQueue.deferred_until)
        .outerjoin(CampaignQueue, CampaignQueue.campaign_id == Campaign.id)
        .where(Campaign.id == campaign_id, func.coalesce(CampaignQueue.defer_reason, "") == "")
    ).first()
    exists = (
        row is not None
        or conn.execute(select(Campaign.id).where(Campaign.id == campaign_id)).first()
    )
    if not exists:
        raise InputError([f"--campaign: no campaign {campaign_id}"])
    scheduled = None
    if row is not None and row.started_at is None and row.status in ("ready", "paused"):
        scheduled = row.deferred_until
    pending_here = (
        CampaignRecipient.campaign_id == campaign_id,
        CampaignRecipient.status == "pending",
    )
    pending = conn.execute(
        select(func.count()).select_from(CampaignRecipient).where(*pending_here)
    ).scalar()
    quota = conn.execute(
        select(SmtpBzQuota.emails_available).order_by(SmtpBzQuota.id.desc()).limit(1)
    ).scalar()
    domain = recipient_domain()
    mix = conn.execute(
        select(domain, func.count())
        .where(*pending_here)
        .group_by(domain)
        .order_by(func.count().desc())
    ).all()
    zones: tuple[tuple[str, int], ...] = ()
    if settings.recipient_timezones:
        by_zone = conn.execute(
            select(CampaignRecipient.timezone, func.count())
            .where(*pending_here)
            .group_by(CampaignRecipient.timezone)
            .order_by(func.count().desc())
        ).all()
        zones = tuple((str(z) or settings.timezone, int(n)) for z, n in by_zone)
    return RealDefaults(
        daily_limit=daily_limit,
        quota=quota or 0,
        pending=pending or 0,
        domains=tuple((str(d), int(n)) for d, n in mix),
        zones=zones,
        scheduled_for=scheduled,
    )

"""What a campaign's workflow starts with besides its input: the Web UI's header and details
and the creator's search attribute (read from the tables; workflows/summaries.py words it).

Shared by every starter — ``mailer start`` and the dispatcher carrying out the CRM's start —
so a campaign reads the same in the UI however it was started.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from db.engine import session_scope
from db.models import Campaign, CampaignRecipient, User
from db.queries import get_account
from mailer.core.settings import Settings
from workflows.search_attributes import MAILER_CREATED_BY
from workflows.summaries import (
    CampaignCard,
    LimitsInForce,
    campaign_details,
    campaign_summary,
)


@dataclass(frozen=True)
class StartMetadata:
    static_summary: str
    static_details: str
    search_attributes: TypedSearchAttributes


def start_metadata(settings: Settings, campaign_id: str) -> StartMetadata:
    """The campaign's card and limits, read now (blocking: call it in a thread)."""
    with session_scope(settings.sqlalchemy_url) as session:
        row = session.execute(
            select(Campaign.name, Campaign.created_by_id, User.username)
            .outerjoin(User, User.id == Campaign.created_by_id)
            .where(Campaign.id == uuid.UUID(campaign_id))
        ).one_or_none()
        recipients = session.scalar(
            select(func.count()).where(CampaignRecipient.campaign_id == uuid.UUID(campaign_id))
        )
        account = get_account(session)
    name, creator_id, username = row if row is not None else ("", None, None)
    card = CampaignCard(campaign_id, name, int(recipients or 0), username or "", creator_id)
    limits = LimitsInForce(
        timezone=settings.timezone,
        working_hours_start=settings.working_hours_start,
        working_hours_end=settings.working_hours_end,
        rate_per_hour=settings.rate_per_hour,
        daily_limit=account.per_user_daily_limit if account is not None else 0,
        breaker_threshold=settings.circuit_breaker_threshold,
        retry_delay_minutes=round(settings.transient_retry_delay_minutes),
    )
    attributes = (
        TypedSearchAttributes([SearchAttributePair(MAILER_CREATED_BY, creator_id)])
        if creator_id is not None
        else TypedSearchAttributes.empty
    )
    return StartMetadata(campaign_summary(card), campaign_details(card, limits), attributes)

"""What a campaign's workflow starts with besides its input: the Web UI's header and details
and the creator's search attribute (read from the tables; workflows/summaries.py words it).

Shared by every starter — ``mailer start`` and the dispatcher carrying out the CRM's start —
so a campaign reads the same in the UI however it was started.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from activities.search_attribute_registry import ensure_search_attributes, missing_attribute
from db.engine import session_scope
from db.models import Campaign, CampaignRecipient, User
from db.queries import get_account
from mailer.core.settings import Settings
from workflows.campaign import CAMPAIGN_WORKFLOW, workflow_id_for
from workflows.contracts import CampaignInput
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


async def start_campaign_run(
    client: Client,
    campaign_input: CampaignInput,
    metadata: StartMetadata,
    task_queue: str,
) -> WorkflowHandle[Any, Any]:
    """Start the campaign's workflow with its metadata. A namespace that lacks one of
    mailer's search attributes (a stack started by an older release, before its worker
    registered them) gets them registered, and the start is tried once more."""

    async def start() -> WorkflowHandle[Any, Any]:
        return await client.start_workflow(
            CAMPAIGN_WORKFLOW,
            campaign_input,
            id=workflow_id_for(campaign_input.campaign_id),
            task_queue=task_queue,
            static_summary=metadata.static_summary,
            static_details=metadata.static_details,
            search_attributes=metadata.search_attributes,
        )

    try:
        return await start()
    except RPCError as error:
        if not missing_attribute(error):
            raise
    await ensure_search_attributes(client, client.namespace)
    return await start()

"""``mailer.client``: what the CRM's code calls to drive campaigns.

Each operation answers once the campaign's workflow has applied it, or raises
:class:`NotApplied` saying why not (finished, not paused, never started, …)::

    from mailer.client import MailerClient

    mailer = MailerClient()            # MAILER_* settings, as the worker reads them
    state = await mailer.start(campaign_id)
    state = await mailer.pause(campaign_id)    # returns once paused
    state = await mailer.status(campaign_id)

Pause, resume and cancel are Temporal Updates (acknowledged); the Web UI's signals of the
same names keep working. Creating campaigns from the CRM's own rows is still to come: today
the CRM writes them to the tables (docs/cutover.md) or uses ``mailer create``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from activities.campaign_runs import live
from mailer.core.errors import MailerError
from mailer.core.settings import Settings, get_settings
from mailer.operations import control
from workflows.contracts import Progress
from workflows.states import Signal

__all__ = ["CampaignState", "MailerClient", "NotApplied"]

T = TypeVar("T")


class NotApplied(MailerError):
    """The campaign did not take the operation; the message says why."""


@dataclass(frozen=True)
class CampaignState:
    """A campaign as the tables and its workflow say: no addresses, only counts."""

    campaign_id: str
    status: str  # mailer_campaign.status
    state: str  # the workflow's: sending, deferred, paused, sent, cancelled ('' if none runs)
    sent: int
    failed: int
    pending: int
    defer_reason: str = ""
    deferred_until: datetime | None = None
    pause_reason: str = ""


class MailerClient:
    """Drives campaigns through Temporal; one per process is enough."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()

    async def start(self, campaign_id: str | uuid.UUID) -> CampaignState:
        """Start a ``ready`` campaign; answers with its state once its run has begun (a
        campaign that sent everything before the answer is ``sent``)."""
        parsed = uuid.UUID(str(campaign_id))
        await _applied(control.start(self.settings, parsed))
        return await self.status(parsed)

    async def pause(self, campaign_id: str | uuid.UUID) -> CampaignState:
        return await self._act(campaign_id, Signal.PAUSE)

    async def resume(self, campaign_id: str | uuid.UUID) -> CampaignState:
        return await self._act(campaign_id, Signal.RESUME)

    async def cancel(self, campaign_id: str | uuid.UUID) -> CampaignState:
        return await self._act(campaign_id, Signal.CANCEL)

    async def status(self, campaign_id: str | uuid.UUID) -> CampaignState:
        parsed = uuid.UUID(str(campaign_id))
        view = control.db_view(self.settings, parsed)
        client = await control.connect_or_explain(self.settings)
        current = await live(client, parsed)
        progress = current.progress if current is not None else None
        return _state(str(parsed), view.status, view.sent, view.failed, view.pending, progress)

    async def _act(self, campaign_id: str | uuid.UUID, action: Signal) -> CampaignState:
        parsed = uuid.UUID(str(campaign_id))
        await _applied(control.signal(self.settings, parsed, action))
        return await self.status(parsed)


async def _applied(operation: Awaitable[T]) -> T:
    try:
        return await operation
    except control.ControlError as exc:
        raise NotApplied(str(exc)) from None


def _state(
    campaign_id: str, status: str, sent: int, failed: int, pending: int, progress: Progress | None
) -> CampaignState:
    if progress is None:
        return CampaignState(campaign_id, status, "", sent, failed, pending)
    return CampaignState(
        campaign_id,
        status,
        str(progress.state),
        sent,
        failed,
        pending,
        defer_reason=progress.defer_reason,
        deferred_until=progress.deferred_until,
        pause_reason=progress.pause_reason,
    )

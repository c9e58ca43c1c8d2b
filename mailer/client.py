"""``mailer.client``: what the CRM's code calls to drive campaigns.

Each operation answers once the campaign's workflow has applied it, or raises
:class:`NotApplied` saying why not (finished, not paused, never started, …)::

    from mailer.client import MailerClient

    mailer = MailerClient()            # MAILER_* settings, as the worker reads them
    state = await mailer.start(campaign_id)
    state = await mailer.pause(campaign_id)    # returns once paused
    state = await mailer.status(campaign_id)

Pause, resume and cancel are Temporal Updates (acknowledged); the Web UI's signals of the
same names keep working. :meth:`MailerClient.create` makes a ``ready`` campaign from the
CRM's own rows with every check ``mailer create`` makes (addresses, templates rendered for
every recipient, the suppression list, the size limit).
"""

from __future__ import annotations

import asyncio
import csv
import tempfile
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from activities.campaign_runs import live
from db.engine import session_scope
from mailer.core.errors import InputError, MailerError
from mailer.core.settings import Settings, get_settings
from mailer.operations import control
from mailer.operations.authoring.create import CampaignDraft, create_campaign
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
    # The workflow's: scheduled, sending, deferred, paused, sent, cancelled ('' if none runs).
    state: str
    sent: int
    failed: int
    pending: int
    defer_reason: str = ""
    deferred_until: datetime | None = None
    pause_reason: str = ""
    scheduled_for: datetime | None = None  # a scheduled start not reached yet


class MailerClient:
    """Drives campaigns through Temporal; one per process is enough."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()

    async def create(
        self,
        *,
        name: str,
        subject: str,
        recipients: Sequence[Mapping[str, str]],
        created_by: str,
        html: str = "",
        text: str = "",
        from_email: str = "",
        from_name: str = "",
    ) -> str:
        """A ``ready`` campaign of ``recipients`` (mappings with an ``email`` key; the other
        keys are template variables); its id. Raises :class:`NotApplied` with every problem
        found, and then nothing is written."""
        draft = _Draft(name, subject, list(recipients), created_by, html, text)
        return await asyncio.to_thread(self._create, draft, from_email, from_name)

    def _create(self, draft: _Draft, from_email: str, from_name: str) -> str:
        with tempfile.TemporaryDirectory(prefix="mailer-create-") as folder:
            paths = draft.written(Path(folder))
            request = CampaignDraft(
                name=draft.name,
                subject=draft.subject,
                recipients_path=paths["recipients"],
                created_by=draft.created_by,
                html_path=paths.get("html"),
                text_path=paths.get("text"),
                from_email=from_email,
                from_name=from_name,
                recipient_timezones=self.settings.recipient_timezones,
            )
            try:
                with session_scope(self.settings.sqlalchemy_url) as session:
                    created = create_campaign(
                        session,
                        request,
                        max_recipients=self.settings.max_campaign_recipients,
                        max_file_mb=self.settings.max_recipients_file_mb,
                    )
            except InputError as exc:
                problems = [p.replace(f"{folder}/", "") for p in exc.problems]
                raise NotApplied("; ".join(problems)) from None
        return str(created.campaign_id)

    async def start(
        self, campaign_id: str | uuid.UUID, at: datetime | None = None
    ) -> CampaignState:
        """Start a ``ready`` campaign now, or at ``at`` (an aware time: ``scheduled``
        until then, its start counted against the creator's starts now); answers with its
        state once its run has begun (a campaign that sent everything before the answer is
        ``sent``). On a scheduled campaign it moves the start (to now without ``at``); a
        time in the past or more than a year ahead raises :class:`NotApplied`."""
        parsed = uuid.UUID(str(campaign_id))
        if at is not None and at.tzinfo is None:
            raise NotApplied("at: give an aware time (with its zone), not a naive one")
        await _applied(control.start(self.settings, parsed, at))
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


@dataclass(frozen=True)
class _Draft:
    name: str
    subject: str
    rows: list[Mapping[str, str]]
    created_by: str
    html: str
    text: str

    def written(self, folder: Path) -> dict[str, Path]:
        """The draft as the files ``mailer create`` reads (a CSV of the rows, the bodies)."""
        columns = list(dict.fromkeys(["email", *(key for row in self.rows for key in row)]))
        paths = {"recipients": folder / "recipients.csv"}
        with paths["recipients"].open("w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=columns, extrasaction="raise")
            writer.writeheader()
            writer.writerows(self.rows)
        for kind, body in (("html", self.html), ("text", self.text)):
            if body:
                paths[kind] = folder / f"body.{kind}"
                paths[kind].write_text(body, encoding="utf-8")
        return paths


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
        scheduled_for=progress.scheduled_for,
    )

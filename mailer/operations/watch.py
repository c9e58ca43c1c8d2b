"""``mailer watch``: a live progress bar fed by the campaign workflow's ``progress`` query."""

from __future__ import annotations

import asyncio
import uuid

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from activities.campaign_runs import live
from mailer.core.settings import Settings
from mailer.operations import control
from workflows.contracts import Progress as CampaignProgress
from workflows.states import WorkflowState


def _label(progress: CampaignProgress) -> str:
    if progress.state == WorkflowState.DEFERRED and progress.defer_reason:
        until = progress.deferred_until.strftime("%H:%M") if progress.deferred_until else "?"
        return f"deferred: {progress.defer_reason} until {until}"
    if progress.state == WorkflowState.PAUSED:
        return f"paused: {progress.pause_reason or 'by an operator'}"
    return progress.state


async def watch_campaign(settings: Settings, campaign_id: uuid.UUID, interval: float = 1.0) -> str:
    """Show progress until the workflow closes; returns the campaign's final DB status."""
    view = control.db_view(settings, campaign_id)
    client = await control.connect_or_explain(settings)
    total = view.total
    with Progress(
        TextColumn("[bold]{task.fields[state]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]}"),
        TimeElapsedColumn(),
    ) as bar:
        task = bar.add_task("sending", total=total, state=view.status, failed=view.failed)
        while True:
            current = await live(client, campaign_id)
            if current is None or not current.running or current.progress is None:
                break
            progress = current.progress
            bar.update(
                task,
                completed=progress.sent + progress.failed,
                state=_label(progress),
                failed=progress.failed,
            )
            await asyncio.sleep(interval)
        final = control.db_view(settings, campaign_id)
        bar.update(
            task, completed=final.sent + final.failed, state=final.status, failed=final.failed
        )
    return f"{final.status}: {final.sent} sent, {final.failed} failed, {final.pending} pending"

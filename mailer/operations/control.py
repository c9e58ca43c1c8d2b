"""Operator actions on running campaigns, through Temporal: start, signals, live progress."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import TimeoutError as TimeoutError_
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.campaign_runs import RESCHEDULE, RUNNING, live
from activities.start_metadata import start_campaign_run, start_metadata
from db.engine import session_scope
from db.queries import CampaignStatusView, campaign_status_view
from mailer.core import temporal_client
from mailer.core.errors import MailerError
from mailer.core.settings import Settings
from mailer.core.start_times import start_time_problem
from workflows.campaign import CampaignWorkflow, workflow_id_for
from workflows.contracts import (
    CampaignInput,
    CampaignResult,
    Progress,
    ProofEmailInput,
    ProofEmailResult,
    QuotaSyncResult,
    RescheduleInput,
)
from workflows.maintenance import QUOTA_SYNC_WORKFLOW_ID, QuotaSyncWorkflow
from workflows.proof import ProofEmailWorkflow, proof_workflow_id
from workflows.states import CampaignStatus, Signal, WorkflowState

SETTLE_SECONDS = 15.0
FIRST_BATCH_SECONDS = 5.0


class ControlError(MailerError):
    """The action cannot be done; the message says why (unknown, not running, finished)."""

    exit_code = 1


async def connect_or_explain(settings: Settings) -> Client:
    try:
        return await temporal_client.connect(settings)
    except RuntimeError as exc:
        raise ControlError(
            f"cannot reach Temporal at {settings.temporal_address} ({exc}); "
            "check MAILER_TEMPORAL_ADDRESS or run `make up`"
        ) from None


def db_view(settings: Settings, campaign_id: uuid.UUID) -> CampaignStatusView:
    with session_scope(settings.sqlalchemy_url) as session:
        view = campaign_status_view(session, campaign_id)
    if view is None:
        raise ControlError(f"no campaign {campaign_id}")
    return view


async def _settle(
    handle: WorkflowHandle[Any, Any],
    done: Callable[[Progress], bool],
    timeout: float = SETTLE_SECONDS,
) -> Progress | None:
    """Poll the progress query until ``done`` or the run closes; ``None`` if it closed."""
    deadline = time.monotonic() + timeout
    last: Progress | None = None
    while time.monotonic() < deadline:
        description = await handle.describe()
        if description.raw_description.workflow_execution_info.status != RUNNING:
            return None
        last = await handle.query(CampaignWorkflow.progress)
        if done(last):
            return last
        await asyncio.sleep(0.2)
    return last


async def start(settings: Settings, campaign_id: uuid.UUID, at: datetime | None = None) -> Progress:
    """Start a ``ready`` campaign now, or at ``at`` (a scheduled start: counted against the
    creator's starts now, sent from then). A campaign already scheduled is moved to ``at``
    (or started now without one)."""
    if at is not None:
        problem = start_time_problem(at, datetime.now(UTC))
        if problem is not None:
            raise ControlError(f"--at: {problem}")
    view = db_view(settings, campaign_id)
    client = await connect_or_explain(settings)
    current = await live(client, campaign_id)
    if current is not None and current.progress is not None and current.progress.scheduled_for:
        return await reschedule(settings, client, campaign_id, at or datetime.now(UTC))
    if view.status != CampaignStatus.READY:
        raise ControlError(f"campaign {campaign_id} is {view.status}, not ready to start")
    metadata = await asyncio.to_thread(start_metadata, settings, str(campaign_id))
    try:
        handle = await start_campaign_run(
            client, CampaignInput(str(campaign_id), start_at=at), metadata, settings.task_queue
        )
    except WorkflowAlreadyStartedError:
        raise ControlError(f"campaign {campaign_id} is already running") from None
    settled = await _settle(handle, lambda p: p.state != WorkflowState.STARTING)
    if settled is None:
        return await closed_at_once(handle, campaign_id)
    if settled.state == WorkflowState.STARTING:
        raise ControlError(
            f"campaign {campaign_id} was submitted but no worker picked it up within "
            f"{SETTLE_SECONDS:.0f}s: is the worker running on task queue {settings.task_queue!r}?"
        )
    if settled.state == WorkflowState.SCHEDULED:
        return settled
    # Wait briefly for the first batch's outcome, so that a campaign that pauses itself a
    # moment later (a wrong password, a refusing server) is not reported as sending.
    first_batch = await _settle(handle, _first_batch_done, timeout=FIRST_BATCH_SECONDS)
    return first_batch or settled


async def reschedule(
    settings: Settings, client: Client, campaign_id: uuid.UUID, at: datetime
) -> Progress:
    """Move a scheduled start (the workflow's ``reschedule`` update); answers once the new
    time is in the tables, or with the campaign's first state if the time is now."""
    handle = client.get_workflow_handle_for(CampaignWorkflow.run, workflow_id_for(str(campaign_id)))
    moved = await _applied(
        settings,
        campaign_id,
        ("reschedule", "the new start time"),
        handle.execute_update(RESCHEDULE, RescheduleInput(at)),
    )
    if moved.scheduled_for is None:  # it starts now: report its first state, as a start does
        settled = await _settle(handle, lambda p: p.state != WorkflowState.SCHEDULED)
        return settled or moved
    return moved


async def closed_at_once(handle: WorkflowHandle[Any, Any], campaign_id: uuid.UUID) -> Progress:
    """A run that closed before the CLI looked: sent everything (a success), or refused."""
    try:
        result = await handle.result()
        if not isinstance(result, CampaignResult):  # an untyped handle: the converter's dict
            result = CampaignResult(**result)
    except Exception as exc:  # the workflow failed: the refusal's message
        cause = getattr(exc, "cause", None) or exc
        raise ControlError(str(getattr(cause, "message", cause))) from None
    return Progress(
        campaign_id=str(campaign_id),
        state=result.status,
        pending=result.pending,
        sent=result.sent,
        failed=result.failed,
    )


def _first_batch_done(progress: Progress) -> bool:
    return progress.state != WorkflowState.SENDING or progress.sent + progress.failed > 0


# Each operator action, as the workflow's acknowledged update (signals stay for the Web UI).
# Any: the SDK types an update declared with a description as returning its coroutine.
UPDATES: dict[Signal, Any] = {
    Signal.PAUSE: CampaignWorkflow.pause_campaign,
    Signal.RESUME: CampaignWorkflow.resume_campaign,
    Signal.CANCEL: CampaignWorkflow.cancel_campaign,
}


async def signal(settings: Settings, campaign_id: uuid.UUID, name: Signal) -> str:
    """Pause, resume or cancel, and answer once the workflow has applied it (a Temporal
    Update); returns the campaign's new state, or raises :class:`ControlError` saying why not."""
    view = db_view(settings, campaign_id)
    client = await connect_or_explain(settings)
    current = await live(client, campaign_id)
    if current is None:
        raise ControlError(f"campaign {campaign_id} is not running (it was never started)")
    if not current.running or current.progress is None:
        raise ControlError(f"campaign {campaign_id} is not running: it is {view.status}")
    handle = client.get_workflow_handle_for(CampaignWorkflow.run, workflow_id_for(str(campaign_id)))
    try:
        applied = await _applied(
            settings, campaign_id, (name, f"the {name}"), handle.execute_update(UPDATES[name])
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        return db_view(settings, campaign_id).status  # it closed meanwhile
    return applied.state


async def _applied(
    settings: Settings,
    campaign_id: uuid.UUID,
    what: tuple[str, str],
    update: Coroutine[Any, Any, Progress],
) -> Progress:
    """The update's answer within SETTLE_SECONDS, or :class:`ControlError` saying why not:
    ``what`` is the verb (``cannot pause campaign …``) and the thing taken (``took the
    pause``)."""
    verb, taken = what
    try:
        async with asyncio.timeout(SETTLE_SECONDS):
            return await update
    except WorkflowUpdateFailedError as exc:
        reason = getattr(exc.cause, "message", None) or str(exc.cause)
        raise ControlError(f"cannot {verb} campaign {campaign_id}: {reason}") from None
    except TimeoutError:
        raise ControlError(
            f"campaign {campaign_id} took {taken} but has not applied it within "
            f"{SETTLE_SECONDS:.0f}s: is a worker polling task queue {settings.task_queue!r}?"
        ) from None


async def sync_quota(settings: Settings) -> QuotaSyncResult:
    """Run the quota sync now (what the hourly schedule does) and wait for it."""
    client = await connect_or_explain(settings)
    handle = await client.start_workflow(
        QuotaSyncWorkflow.run,
        id=f"{QUOTA_SYNC_WORKFLOW_ID}-manual-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
    )
    try:
        return await asyncio.wait_for(handle.result(), timeout=120)
    except TimeoutError:
        raise ControlError(
            f"the quota sync did not finish within 2 minutes: is a worker running on task "
            f"queue {settings.task_queue!r}?"
        ) from None


# A test email no worker has taken by then is dropped (never sent late, by surprise).
TEST_EMAIL_DEADLINE = timedelta(seconds=60)


async def start_proof_email(
    settings: Settings, campaign_id: uuid.UUID, request_id: int
) -> ProofEmailResult:
    """Run the test email's workflow and wait for its outcome."""
    client = await connect_or_explain(settings)
    handle = await client.start_workflow(
        ProofEmailWorkflow.run,
        ProofEmailInput(request_id),
        id=proof_workflow_id(str(campaign_id), request_id),
        task_queue=settings.task_queue,
        execution_timeout=TEST_EMAIL_DEADLINE,
    )
    try:
        return await handle.result()
    except WorkflowFailureError as exc:
        if isinstance(exc.cause, TimeoutError_):
            raise ControlError(
                f"no worker sent the test email within {TEST_EMAIL_DEADLINE.seconds}s: is a "
                f"worker polling task queue {settings.task_queue!r}? (`mailer doctor`)"
            ) from None
        cause: BaseException = exc.cause
        while isinstance(getattr(cause, "cause", None), BaseException):
            cause = getattr(cause, "cause")  # noqa: B009 (mypy: not every cause has one)
        raise ControlError(f"test email not sent: {getattr(cause, 'message', cause)}") from None

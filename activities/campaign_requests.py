"""The CRM's requests, carried out: campaigns whose rows changed (migration 0006's trigger
writes their ids to ``mailer_request``) are started, paused, resumed or cancelled as their
rows ask (:func:`workflows.requests.decide`); a campaign taken over without a workflow starts
from its row's state (:func:`workflows.requests.adopted_state`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.campaign_runs import RESCHEDULE, live
from activities.ledger import campaign_rows, release_processing, take_requests
from activities.start_metadata import start_campaign_run, start_metadata
from db.engine import session_scope
from mailer.core.settings import Settings
from workflows.campaign import CampaignWorkflow, workflow_id_for
from workflows.contracts import CampaignInput, DispatchResult, RescheduleInput
from workflows.requests import (
    Action,
    CampaignRow,
    adopted_state,
    decide,
    scheduled_start,
    start_time_asked,
)
from workflows.states import QueueStatus

log = logging.getLogger(__name__)

# A reschedule's answer is waited for this long at most.
UPDATE_TIMEOUT = timedelta(seconds=15)

# Requests taken per turn; more wait for the next turn (which then comes at once).
REQUESTS_PER_TURN = 200


class CampaignRequests:
    """Acts on campaigns' rows through Temporal; one per worker."""

    def __init__(self, settings: Settings, client: Client) -> None:
        self.settings = settings
        self.client = client

    async def dispatch(self, now: datetime, task_queue: str) -> DispatchResult:
        """Take the requests written since the last turn and do what each row asks."""
        url = self.settings.sqlalchemy_url

        def read() -> tuple[list[CampaignRow], bool]:
            with session_scope(url) as session:
                ids = take_requests(session, REQUESTS_PER_TURN)
                return campaign_rows(session, ids), len(ids) >= REQUESTS_PER_TURN

        rows, more = await asyncio.to_thread(read)
        result = DispatchResult(started=[], paused=[], resumed=[], cancelled=[], more=more)
        for row in rows:
            current = await live(self.client, uuid.UUID(row.campaign_id))
            action = decide(row, current.progress if current else None)
            if await self._carry_out(action, row, now, task_queue):
                _done_list(result, action).append(row.campaign_id)
        return result

    async def _carry_out(
        self, action: Action, row: CampaignRow, now: datetime, task_queue: str
    ) -> bool:
        if action == Action.NOTHING:
            return False
        if action == Action.START:
            started = await self.start_run(row, now, task_queue)
            if started:
                log.info("campaign %s: started (%s in the tables)", row.campaign_id, row.status)
            return started
        handle = self.client.get_workflow_handle(workflow_id_for(row.campaign_id))
        if action == Action.RESCHEDULE:
            return await self._reschedule(handle, row, now)
        signal = {
            Action.PAUSE: CampaignWorkflow.pause,
            Action.RESUME: CampaignWorkflow.resume,
            Action.CANCEL: CampaignWorkflow.cancel,
        }[action]
        try:
            await handle.signal(signal)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            return False  # the run closed meanwhile
        log.info("campaign %s: %s (requested in the tables)", row.campaign_id, action)
        return True

    async def _reschedule(
        self, handle: WorkflowHandle[Any, Any], row: CampaignRow, now: datetime
    ) -> bool:
        at = start_time_asked(row, now)
        try:
            await handle.execute_update(RESCHEDULE, RescheduleInput(at), rpc_timeout=UPDATE_TIMEOUT)
        except WorkflowUpdateFailedError as error:
            log.warning("campaign %s: start not moved: %s", row.campaign_id, error.cause)
            return False
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            return False  # the run closed meanwhile
        log.info(
            "campaign %s: start moved to %s (requested in the tables)",
            row.campaign_id,
            at.isoformat(),
        )
        return True

    async def start_run(self, row: CampaignRow, now: datetime, task_queue: str) -> bool:
        """A run for a campaign with none, from the state its row holds; a queue row left
        ``processing`` (by the old engine, or a run that died) goes back to ``pending``
        first. Whether a run was started (``False``: one is running already)."""
        if row.queue_status == QueueStatus.PROCESSING:

            def unstick() -> None:
                with session_scope(self.settings.sqlalchemy_url) as session:
                    release_processing(session, uuid.UUID(row.campaign_id))

            await asyncio.to_thread(unstick)
        metadata = await asyncio.to_thread(start_metadata, self.settings, row.campaign_id)
        try:
            await start_campaign_run(
                self.client,
                CampaignInput(
                    row.campaign_id, adopted_state(row, now), start_at=scheduled_start(row, now)
                ),
                metadata,
                task_queue,
            )
        except WorkflowAlreadyStartedError:
            return False
        return True


def _done_list(result: DispatchResult, action: Action) -> list[str]:
    return {
        Action.START: result.started,
        Action.PAUSE: result.paused,
        Action.RESUME: result.resumed,
        Action.CANCEL: result.cancelled,
        Action.RESCHEDULE: result.rescheduled,
    }[action]

"""Reconcile: repair drift between the tables and Temporal (see :mod:`workflows.maintenance`).

A campaign the tables say is ``sending`` or ``paused`` gets a new run if its workflow is gone,
and a queue row the playbook's section-3 "resume" SQL cleared wakes the workflow waiting
under it. Two things keep it cheap and right at 10,000 campaigns:

- Which workflows run, and in what state, comes from one visibility listing (a page per
  1,000), not a describe per campaign; only a campaign missing from the listing is
  described (the listing may lag a start by a moment), and the workflow itself is queried
  only under a cleared row and where the listing shows it waiting
  (:func:`workflows.requests.worth_asking`): a sending campaign's row reads cleared too.
- It acts only on a row read again after Temporal answered. The listing of rows is minutes
  old by the time the last of 10,000 is checked: a campaign that finished meanwhile still
  reads ``sending`` there, and one that deferred meanwhile still reads as cleared. A row
  that changed since the listing was written by something alive, and is left to the next
  turn.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from sqlalchemy.orm import Session
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.campaign_requests import CampaignRequests
from activities.campaign_runs import live
from activities.ledger import active_campaigns, campaign_rows
from db.engine import session_scope
from workflows.campaign import CAMPAIGN_WORKFLOW, CampaignWorkflow, workflow_id_for
from workflows.contracts import ReconcileResult
from workflows.requests import CampaignRow, cleared_by_resume_sql, worth_asking
from workflows.search_attributes import MAILER_STATUS
from workflows.states import QueueStatus

log = logging.getLogger(__name__)

T = TypeVar("T")

# The campaigns' workflows that run, as the server's visibility store sees them.
RUNNING_CAMPAIGNS_QUERY = f"WorkflowType = '{CAMPAIGN_WORKFLOW}' AND ExecutionStatus = 'Running'"

# Servers whose visibility cannot answer the listing (then every campaign is described).
_LISTING_UNSUPPORTED = {
    RPCStatusCode.UNIMPLEMENTED,
    RPCStatusCode.INVALID_ARGUMENT,
    RPCStatusCode.FAILED_PRECONDITION,
}


async def running_campaign_workflows(client: Client) -> dict[str, str] | None:
    """The campaigns' running workflows by id, each with the state it published
    (``MailerStatus``; "" before its first), or ``None`` where the server cannot list them
    by query."""
    try:
        return {
            execution.id: execution.typed_search_attributes.get(MAILER_STATUS) or ""
            async for execution in client.list_workflows(RUNNING_CAMPAIGNS_QUERY)
        }
    except RPCError as error:
        if error.status not in _LISTING_UNSUPPORTED:
            raise
        log.info("reconcile: the server cannot list workflows (%s); describing each", error)
        return None


class Reconciliation:
    """One turn of reconcile; :meth:`check` is one campaign's part of it."""

    def __init__(self, requests: CampaignRequests, now: datetime, task_queue: str) -> None:
        self.requests = requests
        self.now = now
        self.task_queue = task_queue
        self.result = ReconcileResult(restarted=[], unstuck=[], resumed=[])

    async def run(self) -> ReconcileResult:
        listed = await self._read(active_campaigns)
        running = await running_campaign_workflows(self.requests.client)
        for row in listed:
            await self.check(row, running)
        return self.result

    async def check(self, listed: CampaignRow, running: dict[str, str] | None = None) -> None:
        """Repair one campaign, listed as ``listed`` at the start of the turn. ``running``:
        the workflows the listing found running, with their states (``None``: not listed,
        describe)."""
        listed_state = None if running is None else running.get(workflow_id_for(listed.campaign_id))
        ask = worth_asking(listed, listed_state)
        if listed_state is not None and not ask:
            return
        # A query is a task on a worker, and a replay of the history of a workflow not in
        # its cache: only asked where the answer can mean a resume.
        current = await live(self.requests.client, uuid.UUID(listed.campaign_id), progress=ask)
        if current is not None and current.running:
            if current.progress is None or not cleared_by_resume_sql(listed, current.progress):
                return
            if await self._unchanged(listed):
                await self._resume(listed)
            return
        if await self._unchanged(listed):
            await self._restart(listed)

    async def _unchanged(self, listed: CampaignRow) -> bool:
        """The campaign's row still reads as listed (read after Temporal answered, so a run
        that wrote it and closed meanwhile is seen here)."""
        fresh = await self._read(lambda session: campaign_rows(session, [listed.campaign_id]))
        return fresh == [listed]

    async def _restart(self, row: CampaignRow) -> None:
        started = await self.requests.start_run(row, self.now, self.task_queue)
        if row.queue_status == QueueStatus.PROCESSING:
            self.result.unstuck.append(row.campaign_id)
        if started:
            self.result.restarted.append(row.campaign_id)
            log.warning(
                "reconcile: campaign %s was %s with no workflow; restarted",
                row.campaign_id,
                row.status,
            )

    async def _resume(self, row: CampaignRow) -> None:
        handle = self.requests.client.get_workflow_handle(workflow_id_for(row.campaign_id))
        await handle.signal(CampaignWorkflow.resume)
        self.result.resumed.append(row.campaign_id)
        log.warning(
            "reconcile: campaign %s: its queue row was cleared (the playbook's resume SQL); "
            "resumed",
            row.campaign_id,
        )

    async def _read(self, query: Callable[[Session], T]) -> T:
        url = self.requests.settings.sqlalchemy_url

        def read() -> T:
            with session_scope(url) as session:
                return query(session)

        return await asyncio.to_thread(read)

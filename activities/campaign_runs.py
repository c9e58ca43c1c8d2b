"""A campaign's workflow as Temporal sees it: running or not, and its progress (a client call,
so it lives with the other I/O; reconcile and the operator's commands both ask it)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from workflows.campaign import CampaignWorkflow, workflow_id_for
from workflows.contracts import Progress

RUNNING = WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
# The workflow's reschedule update, for the CLI's and the dispatcher's calls (Any: the SDK
# types an update declared with a description as returning its coroutine).
RESCHEDULE: Any = CampaignWorkflow.reschedule


@dataclass
class Live:
    """A campaign's workflow as Temporal sees it."""

    running: bool
    progress: Progress | None


async def live(client: Client, campaign_id: uuid.UUID, *, progress: bool = True) -> Live | None:
    """The workflow's state, or ``None`` if it was never started. ``progress=False``: whether
    it runs only (the server answers that alone; a query is a task on a worker, and one that
    replays the workflow's history when it is not cached)."""
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(workflow_id_for(str(campaign_id)))
    try:
        description = await handle.describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    running = description.raw_description.workflow_execution_info.status == RUNNING
    asked = await handle.query(CampaignWorkflow.progress) if running and progress else None
    return Live(running, asked)

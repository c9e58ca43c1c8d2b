"""A worker that polled a task queue and stopped, early in the session, for the doctor's
"no pollers" check.

The server keeps listing a stopped worker's pollers, and the doctor calls them gone only
once they are older than ``MAILER_DOCTOR_POLLER_GONE_SECONDS`` (65 s at least: a live worker
polls again within about a minute). Stopped when the dev server starts, the poller has
usually aged past that by the time ``tests/cli/test_doctor.py`` asks, so the test checks
the real server's listing without sitting through the minute itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from temporalio import activity, workflow
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.client import Client
from temporalio.worker import Worker

from mailer.doctor.probes import task_queue_pollers
from tests.support.harness import wait_for

TASK_QUEUE = "doctor-stopped-worker"


@dataclass(frozen=True)
class StoppedWorker:
    task_queue: str
    stopped_at: datetime


@activity.defn(name="stopped_worker_nothing")
async def _nothing() -> None:
    return None


@workflow.defn(name="StoppedWorkerNothing", sandboxed=False)
class _Nothing:
    @workflow.run
    async def run(self) -> None:
        return None


async def stop_a_worker(client: Client) -> StoppedWorker:
    """Run a worker on :data:`TASK_QUEUE` until the server lists its workflow and activity
    pollers, then stop it."""
    kinds = (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)

    async def listed() -> bool:
        for kind in kinds:
            if not await task_queue_pollers(client, client.namespace, TASK_QUEUE, kind):
                return False
        return True

    async with Worker(client, task_queue=TASK_QUEUE, workflows=[_Nothing], activities=[_nothing]):
        await wait_for(listed, timeout=30, what="the server to list the worker's pollers")
    return StoppedWorker(TASK_QUEUE, datetime.now(UTC))

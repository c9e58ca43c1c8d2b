"""Worker Deployments: which build runs which workflow, and how a new build takes over.

With ``MAILER_BUILD_ID`` set (the image sets it from its build), the worker polls as version
``MAILER_DEPLOYMENT_NAME``/``MAILER_BUILD_ID`` of a Temporal Worker Deployment. Every mailer
workflow is **auto-upgrade**: a campaign sleeps for hours or days, and no rollout keeps an old
worker alive that long (compose and Kubernetes replace it), so a running campaign moves to the
current version at its next workflow task — which is why a workflow change that alters the
commands it issues goes behind ``workflow.patched`` (and is replayed against recorded
histories by ``tests/workflows/test_replay.py``). Pinning would strand a campaign on a build
nobody runs.

How a new build becomes current (``MAILER_DEPLOYMENT_TAKEOVER``): ``new`` (default) — a
worker makes its version current when the deployment has none, or when its version has never
been current or ramping before: a new build takes over once, and an old build restarting
during a rollout never takes back. ``never`` — the operator (or CI) promotes with
``temporal worker deployment set-current-version`` or ramps with ``set-ramping-version``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass

from temporalio.api.deployment.v1 import WorkerDeploymentInfo
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import WorkerDeploymentConfig

from mailer.core.settings import Settings

log = logging.getLogger(__name__)

# How long a starting worker waits for the server to list its version (it appears once the
# worker polls), checking every POLL_SECONDS.
APPEAR_SECONDS = 30.0
POLL_SECONDS = 1.0
# The server rate-limits changes to a deployment ("too many requests issued to Worker
# Deployment", RESOURCE_EXHAUSTED), just after it is created especially: retried this many
# times, waiting 1, 2, 4… seconds (at most 10).
SET_ATTEMPTS = 8


class Takeover(enum.StrEnum):
    NEW = "new"
    NEVER = "never"


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """The worker's deployment version, or ``None`` (unversioned) without a build id."""
    if not settings.build_id:
        return None
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(settings.deployment_name, settings.build_id),
        use_worker_versioning=True,
        # Every workflow (a workflow's own behaviour in its defn would break the unversioned
        # workers the embedded stack and the tests run: the server refuses it).
        default_versioning_behavior=VersioningBehavior.AUTO_UPGRADE,
    )


@dataclass(frozen=True)
class Routing:
    """What the server says of the deployment, for the takeover decision."""

    current_build_id: str  # '' when no version is current
    ours_listed: bool  # the server lists our version (we have polled)
    ours_activated_before: bool  # our version was current or ramping at some time


def should_take_over(routing: Routing, build_id: str, takeover: Takeover) -> bool:
    """Whether a worker of ``build_id`` makes its version current (pure)."""
    if takeover == Takeover.NEVER or not routing.ours_listed:
        return False
    if routing.current_build_id == build_id:
        return False
    return not routing.current_build_id or not routing.ours_activated_before


def routing_of(info: WorkerDeploymentInfo, build_id: str) -> Routing:
    current = info.routing_config.current_deployment_version.build_id
    ours = [
        summary
        for summary in info.version_summaries
        if summary.deployment_version.build_id == build_id
    ]
    return Routing(
        current_build_id=current,
        ours_listed=bool(ours),
        ours_activated_before=any(s.HasField("first_activation_time") for s in ours),
    )


async def describe(client: Client, namespace: str, name: str, build_id: str) -> Routing | None:
    """The deployment's routing as it concerns ``build_id``; ``None`` if it does not exist."""
    try:
        response = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(namespace=namespace, deployment_name=name)
        )
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return routing_of(response.worker_deployment_info, build_id)


async def take_over_if_new(client: Client, settings: Settings) -> str:
    """Make this worker's version current when :func:`should_take_over` says so, once the
    server lists it. Returns what was done, for the log."""
    name, build_id = settings.deployment_name, settings.build_id
    takeover = Takeover(settings.deployment_takeover)
    routing = None
    for _ in range(int(APPEAR_SECONDS / POLL_SECONDS)):
        try:
            routing = await describe(client, settings.temporal_namespace, name, build_id)
        except RPCError as error:
            if error.status != RPCStatusCode.RESOURCE_EXHAUSTED:
                raise
        if routing is not None and routing.ours_listed:
            break
        await asyncio.sleep(POLL_SECONDS)
    if routing is None or not routing.ours_listed:
        return f"version {name}/{build_id} not listed by the server yet: left as it is"
    if not should_take_over(routing, build_id, takeover):
        current = routing.current_build_id or "none"
        return (
            f"version {name}/{build_id} polling; current is {current} "
            f"(MAILER_DEPLOYMENT_TAKEOVER={takeover.value}: "
            f"`temporal worker deployment set-current-version --deployment-name {name} "
            f"--build-id {build_id}` makes it current)"
        )
    request = SetWorkerDeploymentCurrentVersionRequest(
        namespace=settings.temporal_namespace,
        deployment_name=name,
        build_id=build_id,
        identity=client.identity,
    )
    for attempt in range(SET_ATTEMPTS):
        try:
            await client.workflow_service.set_worker_deployment_current_version(request)
            break
        except RPCError as error:
            if error.status != RPCStatusCode.RESOURCE_EXHAUSTED or attempt + 1 == SET_ATTEMPTS:
                raise
            await asyncio.sleep(min(2.0**attempt, 10.0))
    return f"version {name}/{build_id} is now current (was {routing.current_build_id or 'none'})"

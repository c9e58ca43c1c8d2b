"""The worker: runs CampaignWorkflow and mailer's activities on ``MAILER_TASK_QUEUE``.

Started by ``python -m worker`` (the thin entry point at the top level). Registers the
search attributes if they are missing, and shuts down gracefully on SIGINT/SIGTERM:
in-flight batches stop after the message they are sending, which is recorded, and the rest
is handed back to Temporal.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)
from temporalio.common import MetricMeter, WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError
from temporalio.worker import (
    Interceptor,
    UnsandboxedWorkflowRunner,
    Worker,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.mailer_activities import MailerActivities
from activities.search_attribute_registry import ensure_search_attributes
from db.engine import size_pools
from mailer.core import event_loop, temporal_client
from mailer.core.errors import ConfigError
from mailer.core.reachability import REACHABILITY, QuietWhileUnreachable
from mailer.core.settings import Settings, get_settings
from mailer.runtime.counters import start_at_zero
from mailer.runtime.deployment import deployment_config, take_over_if_new
from mailer.runtime.gauges import GaugeCollector
from mailer.runtime.health_endpoint import WorkerHealth
from mailer.runtime.request_listener import RequestListener
from workflows.campaign import CampaignWorkflow
from workflows.maintenance import (
    QUOTA_SYNC_EVERY,
    QUOTA_SYNC_SCHEDULE_ID,
    QUOTA_SYNC_WORKFLOW_ID,
    RECONCILE_EVERY,
    RECONCILE_SCHEDULE_ID,
    RECONCILE_WORKFLOW_ID,
    DispatcherInput,
    DispatcherWorkflow,
    QuotaSyncWorkflow,
    ReconcileWorkflow,
    dispatcher_workflow_id,
)
from workflows.proof import ProofEmailWorkflow

log = logging.getLogger("mailer.worker")

GRACEFUL_SHUTDOWN = timedelta(seconds=30)
# A send batch holds up to three database connections at once (planning, its ledger
# writes, its lease renewal), each used from a thread.
CONNECTIONS_PER_ACTIVITY = 3
TEMPORAL_RETRY_SECONDS = 2.0
# Heartbeats reach the server at least this often, so a pause or cancel reaches a running
# batch within about one message.
HEARTBEAT_THROTTLE = timedelta(milliseconds=300)


async def ensure_schedules(client: Client, task_queue: str) -> list[str]:
    """Create the scheduled jobs unless they exist (visible in the Web UI's Schedules);
    returns the ids created. Each also runs once at creation (the quota is then known from
    the start)."""
    jobs = [
        (QUOTA_SYNC_SCHEDULE_ID, "QuotaSyncWorkflow", QUOTA_SYNC_WORKFLOW_ID, QUOTA_SYNC_EVERY),
        (RECONCILE_SCHEDULE_ID, "ReconcileWorkflow", RECONCILE_WORKFLOW_ID, RECONCILE_EVERY),
    ]
    created = []
    for schedule_id, workflow_name, workflow_id, every in jobs:
        try:
            await client.create_schedule(
                schedule_id,
                Schedule(
                    action=ScheduleActionStartWorkflow(
                        workflow_name, id=workflow_id, task_queue=task_queue
                    ),
                    spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
                    policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
                ),
                trigger_immediately=True,
            )
        except ScheduleAlreadyRunningError:
            continue
        created.append(schedule_id)
    return created


async def ensure_dispatcher(client: Client, task_queue: str) -> bool:
    """Start the task queue's dispatcher unless it runs; whether this call started it."""
    try:
        await client.start_workflow(
            DispatcherWorkflow.run,
            DispatcherInput(),
            id=dispatcher_workflow_id(task_queue),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


def build_worker(
    client: Client,
    settings: Settings,
    *,
    task_queue: str | None = None,
    executor: concurrent.futures.Executor | None = None,
    interceptors: Sequence[Interceptor] = (),
    unversioned_build_id: str | None = None,
) -> Worker:
    """The worker of every workflow and activity on ``task_queue`` (the settings' by default).

    ``unversioned_build_id`` names an unversioned worker's code instead of the SDK's default,
    a hash of every loaded module's code (a quarter of a second at start; the simulator,
    which runs once, passes a name)."""
    activities = MailerActivities(settings, client)
    deployment = deployment_config(settings)
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[
            CampaignWorkflow,
            QuotaSyncWorkflow,
            ReconcileWorkflow,
            DispatcherWorkflow,
            ProofEmailWorkflow,
        ],
        activities=activities.all,
        activity_executor=executor
        or concurrent.futures.ThreadPoolExecutor(max_workers=settings.max_concurrent_activities),
        max_concurrent_activities=settings.max_concurrent_activities,
        max_cached_workflows=settings.max_cached_workflows,
        workflow_runner=workflow_runner(settings),
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        deployment_config=deployment,
        build_id=unversioned_build_id if deployment is None else None,
        interceptors=interceptors,
    )


def workflow_runner(settings: Settings) -> WorkflowRunner:
    """The SDK's sandbox with MAILER_WORKFLOW_SANDBOX, else workflows run as plain code."""
    if settings.workflow_sandbox:
        return SandboxedWorkflowRunner()
    return UnsandboxedWorkflowRunner()


def metrics_runtime(settings: Settings) -> Runtime | None:
    """A runtime serving Prometheus metrics on MAILER_METRICS_PORT (``None`` when 0).

    Raises :class:`ConfigError` naming the variable when the port cannot be listened on."""
    if not settings.metrics_port:
        return None
    address = f"{settings.metrics_host}:{settings.metrics_port}"
    try:
        return Runtime(
            telemetry=TelemetryConfig(
                metrics=PrometheusConfig(
                    bind_address=address,
                    counters_total_suffix=True,
                    # Durations in seconds, named so: temporal_…_latency_seconds_bucket, as
                    # Prometheus' conventions and Temporal's SDK dashboards have them.
                    durations_as_seconds=True,
                    unit_suffix=True,
                )
            )
        )
    except Exception as exc:  # the SDK reports a bind failure as a bare exception
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"MAILER_METRICS_PORT: cannot serve metrics on {address} ({reason})"
        ) from None


async def connect_when_up(settings: Settings, runtime: Runtime | None = None) -> Client:
    """Connect to Temporal, waiting for it if it is not up yet: one ERROR line naming it,
    then quiet retries."""
    while True:
        try:
            client = await temporal_client.connect(settings, runtime)
        except RuntimeError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            REACHABILITY.down("Temporal", settings.temporal_address, reason)
            log.debug("Temporal still unreachable; retrying in %ss", TEMPORAL_RETRY_SECONDS)
            await asyncio.sleep(TEMPORAL_RETRY_SECONDS)
            continue
        REACHABILITY.up("Temporal")
        return client


def _prepare_threads(settings: Settings) -> None:
    """Every blocking database call runs in a thread (asyncio.to_thread): enough threads and
    connections for all activities at once, or batches wait on each other's checkouts."""
    connections = CONNECTIONS_PER_ACTIVITY * settings.max_concurrent_activities
    size_pools(connections)
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=connections, thread_name_prefix="db")
    )


__all__ = ["build_worker", "ensure_search_attributes", "main", "run"]


async def _register(client: Client, settings: Settings) -> None:
    """The search attributes and schedules the worker needs, created if missing."""
    added = await ensure_search_attributes(client, settings.temporal_namespace)
    if added:
        log.info("registered search attributes: %s", ", ".join(added))
    for schedule in await ensure_schedules(client, settings.task_queue):
        log.info("created schedule %s", schedule)
    if await ensure_dispatcher(client, settings.task_queue):
        log.info("started the dispatcher %s", dispatcher_workflow_id(settings.task_queue))


async def _take_over(client: Client, settings: Settings) -> None:
    """Make this build current if it is new (mailer.runtime.deployment); a refusal (no
    permission on the deployment, say) is logged and the worker serves on."""
    try:
        log.info("%s", await take_over_if_new(client, settings))
    except RPCError as exc:
        log.warning(
            "cannot make version %s current: %s (%s)",
            settings.build_id,
            exc.message,
            exc.status.name,
        )


async def run(settings: Settings) -> None:
    _prepare_threads(settings)
    if not settings.unsubscribe_key:
        log.warning(
            "MAILER_UNSUBSCRIBE_SECRET is not set: messages carry no List-Unsubscribe "
            "(Gmail and Yahoo require one-click unsubscribe from bulk senders)"
        )
    runtime = metrics_runtime(settings)
    # 0 from the first scrape until the worker polls: a worker still waiting for Temporal
    # is up to Prometheus but not ready, and the alerts say so.
    meter = runtime.metric_meter if runtime is not None else MetricMeter.noop
    ready = meter.create_gauge("mailer_worker_ready", "1 while this worker polls its task queue")
    ready.set(0)
    # Alive from the start, ready once polling: a startup probe must not kill a worker that
    # waits for Temporal.
    health = WorkerHealth(
        settings.temporal_namespace, settings.task_queue, settings.temporal_address
    )
    if settings.health_port:
        await health.start(settings.metrics_host, settings.health_port)
        log.info("health on http://%s:%d/readyz", settings.metrics_host, settings.health_port)
    client = await connect_when_up(settings, runtime)
    health.connected(client)
    await _register(client, settings)
    worker = build_worker(client, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "worker polling task queue %r on %s (namespace %s) as %s, on %s's event loop",
        settings.task_queue,
        settings.temporal_address,
        settings.temporal_namespace,
        client.identity,
        settings.event_loop,
    )
    gauges = None
    if runtime is not None:
        start_at_zero(meter, settings.temporal_namespace, settings.task_queue)
        collector = GaugeCollector(settings, client, meter)
        gauges = asyncio.create_task(collector.run())
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    listener = (
        asyncio.create_task(RequestListener(client, settings).run())
        if settings.listen_for_requests
        else None
    )
    try:
        async with worker:
            health.running = True
            ready.set(1)
            # In the background: a server slow to list the version must not delay a SIGTERM.
            takeover = (
                asyncio.create_task(_take_over(client, settings)) if settings.build_id else None
            )
            await stop.wait()
            if takeover is not None:
                takeover.cancel()
            health.running = False
            ready.set(0)
            log.info("shutting down: finishing in-flight work (up to %s)", GRACEFUL_SHUTDOWN)
    finally:
        if listener is not None:
            listener.cancel()
        if gauges is not None:
            gauges.cancel()
        await health.stop()
    log.info("worker stopped")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = get_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The SDK's own chatter stays at WARNING; workflow state-change lines keep our level.
    logging.getLogger("temporalio").setLevel(
        logging.DEBUG if settings.log_level == "DEBUG" else logging.WARNING
    )
    logging.getLogger("temporalio.workflow").setLevel(settings.log_level)
    # The database being down is said once (mailer.core.reachability), not once per retry.
    logging.getLogger("temporalio.activity").addFilter(QuietWhileUnreachable())
    try:
        event_loop.run(run(settings), settings.event_loop)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0

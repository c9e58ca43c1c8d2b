"""The chaos rig: the embedded stack in a directory of its own, worker processes, a recording
SMTP sink, and the audit that compares what the sink received with what the ledger says.

Shared by the ``chaos`` tests and ``bench/chaos.py`` (which prints the fault table). Each
scenario gets a fresh database, a fresh task queue and an empty Redis; the stack's
servers (PostgreSQL, Redis, the Temporal dev server) are the ones ``make up`` runs, and a
fault is one of them (or the worker) stopped for real.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from pathlib import Path

import redis as redis_lib
from temporalio.client import Client, WorkflowHandle

from db.engine import get_engine
from db.migrate import upgrade
from mailer.stack import embedded, postgres, seed_data
from mailer.stack.seed_data import sql_execute, sql_rows
from mailer.stack.smtp_sink import SinkHandler, SmtpSink
from mailer.stack.throwaway import stack_on_free_ports
from workflows.campaign import CampaignWorkflow, workflow_id_for
from workflows.contracts import CampaignInput, CampaignResult

# Faults are rehearsed quickly: a killed worker's batch is retried after this, a hung
# server is given up on after this, and a transient error defers for 3 seconds (the
# seed's 5 minutes behave the same, slower).
HEARTBEAT_TIMEOUT_SECONDS = 3
SMTP_TIMEOUT_SECONDS = 3
TRANSIENT_RETRY_DELAY_MINUTES = 0.05
POLL_SECONDS = 0.05
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def zone_name() -> str:
    """The zone the rig's workers run in: the test harness's (``MAILER_TEST_TIMEZONE``, which
    ``pytest --harness-timezone`` sets; tests/support/harness.py), else the seed's."""
    return os.environ.get("MAILER_TEST_TIMEZONE") or "Europe/Moscow"


@dataclass
class Outcome:
    """One row of the fault table."""

    fault: str
    injected: int
    recipients: int
    delivered: int
    lost: int
    duplicated: int
    duplicates_kept_message_id: bool
    ledger_mismatches: int
    recover_seconds: float
    notes: list[str] = field(default_factory=list)
    # What a scenario measured beyond the table (per-hour counts, batches per worker…).
    details: dict[str, list[int]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.ledger_mismatches == 0 and self.duplicates_kept_message_id


@dataclass(frozen=True)
class Audit:
    """The sink's deliveries against the ledger, for a set of campaigns."""

    recipients: int
    delivered: int  # distinct recipients the sink received
    duplicated: int  # deliveries beyond the first per recipient
    duplicates_kept_message_id: bool
    lost: int  # marked sent but never received, or neither sent nor still waiting
    pending: int  # still waiting in the ledger (a deferral, not a loss)
    mismatches: int  # the ledger and the sink disagree on what was sent, or its Message-ID


@dataclass(frozen=True)
class CampaignState:
    """The playbook's view of a campaign: its row and its queue row."""

    campaign: str  # mailer_campaign.status
    queue: str  # mailer_campaignqueue.status
    defer_reason: str
    transient_errors: int

    @property
    def deferred(self) -> bool:
        return self.campaign == "sending" and self.queue == "pending" and bool(self.defer_reason)


class Stack:
    """``make up``'s servers in a temporary directory, on free ports."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mailer-chaos-"))
        self.settings = stack_on_free_ports(self.root)

    def __enter__(self) -> Stack:
        embedded.up(self.settings)
        return self

    def __exit__(self, *exc: object) -> None:
        embedded.down(self.settings)

    def stop(self, part: str) -> None:
        embedded.stop_part(self.settings, part)

    def start(self, part: str) -> None:
        embedded.start_part(self.settings, part)

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.settings.redis_port}/0"

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.settings.temporal_port}"

    def new_database(self) -> str:
        name = f"chaos_{uuid.uuid4().hex[:10]}"
        postgres.ensure_database(self.settings.postgres_port, name)
        url = postgres.url(self.settings.postgres_port, name)
        upgrade(url)
        return url


class WorkerProcess:
    """``python -m worker`` with the scenario's settings; its output in a log file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "worker"],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def polling(self) -> bool:
        return "worker polling" in self.log.read_text(errors="replace")

    def kill(self) -> None:
        """``kill -9``: no graceful anything."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()


class Scenario:
    """One scenario's database, sink, task queue and workers on the shared stack."""

    def __init__(self, stack: Stack, client: Client, **settings: object) -> None:
        self.stack = stack
        self.client = client
        self.database_url = stack.new_database()
        self.task_queue = f"chaos-{uuid.uuid4().hex[:8]}"
        self.handler = SinkHandler()
        self.sink = SmtpSink(self.handler).start()
        self.logs = Path(tempfile.mkdtemp(prefix="chaos-logs-", dir=stack.root))
        self.workers: list[WorkerProcess] = []
        self.settings = {
            "MAILER_ENV_FILES": "",
            "MAILER_DATABASE_URL": self.database_url,
            "MAILER_REDIS_URL": stack.redis_url,
            "MAILER_TEMPORAL_ADDRESS": stack.temporal_address,
            "MAILER_SMTP_BZ_API_URL": f"http://127.0.0.1:{stack.settings.smtpbz_port}/v1",
            "MAILER_TASK_QUEUE": self.task_queue,
            "MAILER_TIMEZONE": zone_name(),
            "MAILER_WORKING_HOURS_START": "0",
            "MAILER_WORKING_HOURS_END": "24",
            "MAILER_RATE_PER_HOUR": "1000000",
            # The scenarios are sized for batches of 100 (the default until stop 42): each
            # fault then meets several batch boundaries — a reservation while Redis is down,
            # kills between and inside batches — where 500 would send a campaign in one.
            "MAILER_SEND_BATCH_SIZE": "100",
            "MAILER_THROTTLE_CAMPAIGN_START_PER_HOUR": "1000",
            "MAILER_SEND_HEARTBEAT_TIMEOUT_SECONDS": str(HEARTBEAT_TIMEOUT_SECONDS),
            "MAILER_TRANSIENT_RETRY_DELAY_MINUTES": str(TRANSIENT_RETRY_DELAY_MINUTES),
            "MAILER_SMTP_TIMEOUT_SECONDS": str(SMTP_TIMEOUT_SECONDS),
        }
        self.settings.update({f"MAILER_{k.upper()}": str(v) for k, v in settings.items()})
        client_redis = redis_lib.Redis.from_url(stack.redis_url)
        client_redis.flushdb()  # the hour's window is global: each scenario starts at 0
        client_redis.close()
        self.user = seed_data.add_user(self.database_url)
        # The account's smtp.bz key is not the stub's: the quota sync fails harmlessly and
        # the quota set here stays.
        seed_data.set_account(self.database_url, smtp_port=self.sink.port)
        seed_data.set_quota(self.database_url, 10_000_000)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.sink.stop()
        get_engine(self.database_url).dispose()

    # --- workers and campaigns ---------------------------------------------------------

    def start_worker(self) -> WorkerProcess:
        env = dict(os.environ)
        env.update(self.settings)
        worker = WorkerProcess(env, self.logs / f"worker-{len(self.workers) + 1}.log")
        self.workers.append(worker)
        return worker

    def worker_logs(self) -> str:
        return "".join(w.log.read_text(errors="replace") for w in self.workers if w.log.exists())

    def campaign(self, recipients: int) -> str:
        return seed_data.add_campaign(self.database_url, self.user, recipients)

    async def start(self, campaign_id: str) -> WorkflowHandle[CampaignWorkflow, CampaignResult]:
        return await self.client.start_workflow(
            CampaignWorkflow.run,
            CampaignInput(campaign_id),
            id=workflow_id_for(campaign_id),
            task_queue=self.task_queue,
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``mailer ARGS`` as an operator runs it, against this scenario."""
        env = dict(os.environ)
        env.update(self.settings)
        return subprocess.run(
            [sys.executable, "-m", "mailer.cli", *args],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    # --- what happened ----------------------------------------------------------------

    def sql(self, query: str, **params: object) -> list[tuple[object, ...]]:
        return sql_rows(self.database_url, query, **params)

    def sql_exec(self, statement: str, **params: object) -> None:
        sql_execute(self.database_url, statement, **params)

    def received(self) -> int:
        return self.handler.sequence

    def state(self, campaign_id: str) -> CampaignState:
        rows = self.sql(
            "SELECT c.status, q.status, coalesce(q.defer_reason, ''), "
            "q.consecutive_transient_errors FROM mailer_campaign c "
            "JOIN mailer_campaignqueue q ON q.campaign_id = c.id WHERE c.id = :c",
            c=campaign_id,
        )
        if not rows:
            return CampaignState("", "", "", 0)
        campaign, queue, reason, errors = rows[0]
        return CampaignState(str(campaign), str(queue), str(reason), int(errors or 0))  # type: ignore[call-overload]

    def audit(self, campaign_ids: list[str]) -> Audit:
        ledger = {
            str(email): (str(status), str(message_id or ""))
            for email, status, message_id in self.sql(
                "SELECT email, status, message_id FROM mailer_campaignrecipient "
                "WHERE campaign_id = ANY(CAST(:ids AS uuid[]))",
                ids=campaign_ids,
            )
        }
        sent_logs = Counter(
            str(email)
            for (email,) in self.sql(
                "SELECT email FROM mailer_sendlog WHERE status = 'sent' "
                "AND campaign_id = ANY(CAST(:ids AS uuid[]))",
                ids=campaign_ids,
            )
        )
        deliveries: dict[str, list[str]] = {}
        parser = BytesHeaderParser()
        for message in list(self.handler.messages):
            message_id = str(parser.parsebytes(message.data).get("Message-ID", "")).strip()
            for address in message.recipients:
                if address in ledger:
                    deliveries.setdefault(address, []).append(message_id)
        duplicated = sum(len(ids) - 1 for ids in deliveries.values())
        kept = all(len(set(ids)) == 1 for ids in deliveries.values())
        lost = mismatches = pending = 0
        for email, (status, message_id) in ledger.items():
            received = deliveries.get(email, [])
            if status == "pending":
                pending += 1
            if status == "sent" and not received:
                lost += 1
            if status == "failed" and not received:
                lost += 1  # no fault scenario here should fail a recipient
            recorded_as_received = bool(received) == (status == "sent")
            # A repeat must carry the first delivery's Message-ID: the one the ledger holds.
            same_message = not received or (received[0] == message_id and sent_logs[email] == 1)
            if not (recorded_as_received and same_message):
                mismatches += 1
        return Audit(
            recipients=len(ledger),
            delivered=len(deliveries),
            duplicated=duplicated,
            duplicates_kept_message_id=kept,
            lost=lost,
            pending=pending,
            mismatches=mismatches,
        )

    def window_used(self) -> int:
        """The hourly window's count in Redis for the current clock hour of the harness's zone."""
        from datetime import UTC, datetime

        from workflows.working_hours import rate_window_key

        client = redis_lib.Redis.from_url(self.stack.redis_url)
        try:
            key = rate_window_key(datetime.now(UTC), zone_name())
            return int(client.get(key) or 0)
        finally:
            client.close()

    def sent_this_hour(self) -> int:
        rows = self.sql(
            "SELECT count(*) FROM mailer_sendlog WHERE status = 'sent' AND "
            "date_trunc('hour', created_at AT TIME ZONE :zone) = "
            "date_trunc('hour', now() AT TIME ZONE :zone)",
            zone=zone_name(),
        )
        return int(str(rows[0][0]))

    def sent_per_hour(self) -> list[int]:
        rows = self.sql(
            "SELECT count(*) FROM mailer_sendlog WHERE status = 'sent' "
            "GROUP BY date_trunc('hour', created_at AT TIME ZONE :zone)",
            zone=zone_name(),
        )
        return [int(n) for (n,) in rows]  # type: ignore[call-overload]


async def until(predicate: Callable[[], object], *, timeout: float, what: str) -> float:
    """Poll ``predicate`` (sync or async) until truthy; the seconds it took."""
    started = time.monotonic()
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(POLL_SECONDS)


@contextmanager
def running_stack() -> Iterator[Stack]:
    with Stack() as stack:
        yield stack


@asynccontextmanager
async def scenario(stack: Stack, **settings: object) -> AsyncIterator[Scenario]:
    client = await Client.connect(stack.temporal_address)
    run = Scenario(stack, client, **settings)
    try:
        yield run
    finally:
        run.close()

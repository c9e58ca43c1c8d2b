"""The cut-over rehearsed with Django itself: the CRM's own migrations make the seed's
tables, ``mailer db adopt`` takes them over (or refuses, changing nothing), and a campaign
the CRM's ORM creates and queues is sent by a real worker."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from bench.faults.rig import WorkerProcess
from mailer.stack import postgres
from mailer.stack.seed_data import sql_rows
from mailer.stack.servers import PostgresCluster
from mailer.stack.smtp_sink import SmtpSink
from mailer.stack.smtpbz_stub import SmtpBzStubServer
from tests.support.crm import crm_sql
from tests.support.harness import (
    PROJECT_ROOT,
    Harness,
    cli,
    on_the_dev_server,
    process_env,
    progress,
    wait_for,
)
from workflows.campaign import workflow_id_for
from workflows.maintenance import ReconcileWorkflow


def django(cluster: PostgresCluster, name: str, *args: str) -> str:
    """The stand-in CRM's ORM at work (tests/crm/django_crm/actions.py); its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.crm.django_crm.actions", *args],
        cwd=PROJECT_ROOT,
        env={
            **os.environ,
            "CRM_DATABASE_NAME": name,
            "CRM_DATABASE_PORT": str(cluster.port),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def django_database(cluster: PostgresCluster) -> tuple[str, str]:
    """An empty database whose seed tables Django's migrations made; its name and URL."""
    name = f"crm_{uuid.uuid4().hex[:10]}"
    with cluster.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    django(cluster, name, "migrate")
    return name, postgres.url(cluster.port, name)


@pytest.fixture
def crm(
    dev_env: WorkflowEnvironment,
    pg_cluster: PostgresCluster,
    redis_url: str,
    sink: SmtpSink,
    stub: SmtpBzStubServer,
) -> tuple[Harness, str]:
    """This test's servers around a database the stand-in CRM's migrations made."""
    name, url = django_database(pg_cluster)
    return on_the_dev_server(dev_env.client, url, redis_url, sink, stub), name


def tables(harness: Harness) -> set[str]:
    rows = sql_rows(
        harness.database_url,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
    )
    return {str(row[0]) for row in rows}


async def test_upgrade_refuses_and_adopt_checks_then_takes_over(
    crm: tuple[Harness, str], pg_cluster: PostgresCluster
) -> None:
    harness, _ = crm
    refused = await cli(harness, "db", "upgrade")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "error: the CRM's tables are here but mailer has not adopted them: run `mailer db "
        "adopt` (it checks them and changes nothing if they do not fit)"
    ]
    assert "alembic_version" not in tables(harness)

    adopted = await cli(harness, "db", "adopt")
    assert adopted.returncode == 0, adopted.stderr
    assert {"alembic_version", "mailer_request", "mailer_suppression"} <= tables(harness)
    columns = sql_rows(
        harness.database_url,
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = 'mailer_campaignrecipient'",
    )
    assert {"claim_token", "attempts"} <= {str(c[0]) for c in columns}
    again = await cli(harness, "db", "upgrade")
    assert again.returncode == 0, again.stderr
    # Django's user table needs what mailer's user model does not set: said in one line.
    user = await cli(harness, "user", "add", "boris")
    assert user.returncode == 2
    [line] = user.stderr.strip().splitlines()
    assert line.startswith("error: users belong to the CRM here: accounts_user requires password")
    assert line.endswith("which mailer does not set; add the user in the CRM")
    assert sql_rows(harness.database_url, "SELECT count(*) FROM accounts_user") == [(0,)]


async def test_adopt_names_every_mismatch_and_changes_nothing(
    crm: tuple[Harness, str],
) -> None:
    harness, _ = crm
    shrink = "ALTER TABLE mailer_campaignqueue ALTER COLUMN defer_reason TYPE varchar(8)"
    drop = "ALTER TABLE mailer_sendlog DROP COLUMN smtp_code"
    url = harness.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(shrink)
        conn.execute(drop)
    before = tables(harness)
    refused = await cli(harness, "db", "adopt")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "error: mailer_campaignqueue.defer_reason: VARCHAR(8) is shorter than the 32 "
        "characters mailer may write",
        "error: mailer_sendlog.smtp_code: column missing (integer)",
        "error: nothing was changed",
    ]
    assert tables(harness) == before


async def test_a_campaign_the_orm_queues_is_sent_by_a_worker(
    crm: tuple[Harness, str], pg_cluster: PostgresCluster, tmp_path: Path
) -> None:
    harness, name = crm
    assert (await cli(harness, "db", "adopt")).returncode == 0
    campaign = django(pg_cluster, name, "seed", str(harness.sink.port), "5")
    worker = WorkerProcess(process_env(harness), tmp_path / "worker.log")
    try:
        await wait_for(worker.polling, timeout=60, what="the worker to poll")
        django(pg_cluster, name, "queue", campaign)
        await wait_for(
            lambda: len(harness.sent_times(campaign)) == 5, timeout=30, what="all five sent"
        )
        await wait_for(
            lambda: harness.queue_row(campaign)["campaign_status"] == "sent",
            what="the campaign marked sent",
        )
        # The quota sync on the CRM's table with its row gone: mailer writes a new row with
        # every value set itself (Django's table has no database defaults).
        crm_sql(harness, "DELETE FROM mailer_smtpbzquota")
        synced = await cli(harness, "quota", "sync")
        assert "quota sync failed" in synced.stderr, synced.stderr  # the account has no key
        [(available, error)] = sql_rows(
            harness.database_url, "SELECT emails_available, sync_error FROM mailer_smtpbzquota"
        )
        assert available == 0 and error
    finally:
        worker.stop()
    assert sorted(harness.sink.handler.recipients()) == [f"client{i}@example.com" for i in range(5)]


async def test_the_celery_engines_campaigns_in_flight_are_taken_over(
    crm: tuple[Harness, str], pg_cluster: PostgresCluster, tmp_path: Path
) -> None:
    """Written by the ORM before the cut-over (so no request exists), taken over by the
    reconcile run the runbook triggers: deferral, breaker count and pause kept, the stale
    row reset, nobody sent twice; then the CRM's UI resumes the paused one."""
    harness, name = crm
    ids = dict(
        line.split("=")
        for line in django(pg_cluster, name, "midflight", str(harness.sink.port)).splitlines()
    )
    assert (await cli(harness, "db", "adopt")).returncode == 0
    worker = WorkerProcess(process_env(harness), tmp_path / "worker.log")
    try:
        await wait_for(worker.polling, timeout=60, what="the worker to poll")
        await harness.client.start_workflow(
            ReconcileWorkflow.run,
            id=f"reconcile-{uuid.uuid4().hex[:8]}",
            task_queue=harness.task_queue,
        )
        deferred = harness.client.get_workflow_handle(workflow_id_for(ids["deferred"]))
        await wait_for(lambda: _state(deferred, "deferred"), timeout=30, what="the takeover")
        state = await progress(deferred)
        assert (state.defer_reason, state.consecutive_transient_errors, state.last_error) == (
            "rate_per_hour",
            7,
            "451 4.7.1 try later",
        )
        [(until,)] = sql_rows(
            harness.database_url,
            "SELECT deferred_until FROM mailer_campaignqueue WHERE campaign_id = :c",
            c=ids["deferred"],
        )
        assert state.deferred_until == until
        paused = harness.client.get_workflow_handle(workflow_id_for(ids["paused"]))
        await wait_for(lambda: _state(paused, "paused"), timeout=30, what="the pause kept")
        assert (await progress(paused)).consecutive_transient_errors == 10
        await wait_for(lambda: len(harness.sent_times(ids["stuck"])) == 5, timeout=30, what="stuck")
        await wait_for(
            lambda: len(harness.sent_times(ids["deferred"])) == 10, timeout=60, what="deferred"
        )
        assert isinstance(until, datetime)
        assert min(harness.sent_times(ids["deferred"])[3:]) >= until  # none before the deferral

        django(pg_cluster, name, "set-status", ids["paused"], "sending")  # the CRM's UI
        await wait_for(
            lambda: len(harness.sent_times(ids["paused"])) == 5, timeout=30, what="resumed"
        )
    finally:
        worker.stop()
    delivered = harness.sink.handler.recipients()
    assert len(delivered) == len(set(delivered)) == 7 + 3 + 5  # only the pending, once each
    assert not {f"deferred{i}@example.com" for i in range(3)} & set(delivered)
    assert sql_rows(
        harness.database_url,
        "SELECT count(*) FROM mailer_campaignrecipient WHERE status = 'failed'",
    ) == [(1,)]


async def _state(handle: WorkflowHandle[Any, Any], wanted: str) -> bool:
    try:
        return str((await progress(handle)).state) == wanted
    except RPCError:  # not started yet
        return False

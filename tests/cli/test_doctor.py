"""``mailer doctor`` against real servers: all OK on a running stack, and each failure the
playbook names gives its documented exit code, with the part's address and no traceback."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from mailer.runtime.worker import ensure_schedules
from mailer.stack.servers import free_port
from mailer.stack.throwaway import redis_server
from tests.support.harness import Harness, cli, hours_excluding_now, wait_for
from tests.support.stopped_worker import StoppedWorker
from tests.support.webservice import SECRET, WebService


def report(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert "Traceback" not in result.stderr, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    assert data["exit_code"] == result.returncode
    return data


def levels(data: dict[str, Any]) -> dict[str, str]:
    return {check["name"]: check["level"] for check in data["checks"]}


def check(data: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [c for c in data["checks"] if c["name"] == name]
    return dict(found)


def unsubscribing(web: WebService) -> dict[str, str]:
    """The doctor's environment with the unsubscribe service configured and running."""
    return {"MAILER_UNSUBSCRIBE_SECRET": SECRET, "MAILER_UNSUBSCRIBE_BASE_URL": web.base_url}


async def test_running_stack_is_all_ok_and_shows_every_section(
    dev: Harness,
    web: WebService,
) -> None:
    campaign = dev.ready_campaign(2)
    await ensure_schedules(dev.client, dev.task_queue)
    start, end = hours_excluding_now()
    async with dev.worker(working_hours_start=start, working_hours_end=end):
        started = await cli(dev, "start", campaign)  # deferred: outside working hours
        assert started.returncode == 0, started.stderr
        text = await cli(dev, "doctor", env_overrides=unsubscribing(web))
        data = report(await cli(dev, "doctor", "--json", env_overrides=unsubscribing(web)))
    assert text.returncode == 0, text.stdout + text.stderr
    assert set(levels(data).values()) == {"OK"}, data["checks"]
    for section in (
        "Temporal",
        "Workers",
        "Schedule    mailer-quota-sync",
        "Schedule    mailer-reconcile",
        "PostgreSQL",
        "Redis",
        "Rate",
        "Quota",
        "Active campaigns (1)",
        f"Unsubscribe {web.base_url}: answers",
        "Top defer reasons",
        "Checks",
        "Result: OK (exit 0)",
    ):
        assert section in text.stdout, section
    [row] = data["facts"]["database"]["campaigns"]
    assert (row["campaign_id"], row["defer_reason"], row["pending"]) == (
        campaign,
        "outside_hours",
        2,
    )
    assert data["facts"]["database"]["defer_reasons"][0]["reason"] == "outside_hours"
    assert data["facts"]["temporal"]["workflow_pollers"]


async def test_redis_stopped_is_critical_and_says_the_limiter_fails_open(dev: Harness) -> None:
    await ensure_schedules(dev.client, dev.task_queue)
    with redis_server() as stopped:
        url = stopped.url
    async with dev.worker():
        result = await cli(dev, "doctor", "--json", env_overrides={"MAILER_REDIS_URL": url})
    data = report(result)
    assert result.returncode == 2
    redis = check(data, "redis")
    assert redis["level"] == "CRIT"
    assert (
        f"Redis at 127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}/0 unreachable"
        in redis["summary"]
    )
    assert "fails open" in redis["summary"] and redis["playbook"].endswith("#redis-down")
    text = await cli(dev, "doctor", env_overrides={"MAILER_REDIS_URL": url})
    assert "the rate limiter FAILS OPEN" in text.stdout


async def test_worker_stopped_is_critical_no_pollers(
    dev: Harness, stopped_worker: StoppedWorker
) -> None:
    await ensure_schedules(dev.client, dev.task_queue)
    async with dev.worker():
        running = report(await cli(dev, "doctor", "--json"))
        assert check(running, "workers")["level"] == "OK"
    # A stopped worker's poller stays listed by the server, last seen when it stopped; a
    # live one polls again within about a minute. The doctor goes CRIT once it is as old as
    # MAILER_DOCTOR_POLLER_GONE_SECONDS (2 minutes by default, 65 s at least). The worker
    # that stopped when the dev server started is usually that old already.
    gone_after = {"MAILER_DOCTOR_POLLER_GONE_SECONDS": "65"}
    on_its_queue = {"MAILER_TASK_QUEUE": stopped_worker.task_queue, **gone_after}
    outcome: dict[str, Any] = {}

    async def doctor_of_the_stopped_worker() -> dict[str, Any]:
        outcome.update(report(await cli(dev, "doctor", "--json", env_overrides=on_its_queue)))
        return outcome

    if datetime.now(UTC) - stopped_worker.stopped_at < timedelta(seconds=50):
        # Still fresh: listed, and a poller seen within the threshold counts as live.
        fresh = check(await doctor_of_the_stopped_worker(), "workers")
        assert fresh["level"] == "OK", fresh

    async def stopped_seen() -> bool:
        data = await doctor_of_the_stopped_worker()
        return bool(data["exit_code"] == 2 and check(data, "workers")["level"] == "CRIT")

    await wait_for(stopped_seen, timeout=180, interval=5, what="the doctor to see no pollers")
    workers = check(outcome, "workers")
    assert workers["summary"].startswith("no pollers (workflow and activity) on task queue")
    assert stopped_worker.task_queue in workers["summary"]
    assert workers["playbook"].endswith("#no-worker")


async def test_stuck_processing_is_critical(dev: Harness) -> None:
    campaign = dev.ready_campaign(1)
    dev.sql_exec("UPDATE mailer_campaign SET status = 'sending' WHERE id = :c", c=campaign)
    dev.sql_exec(
        "INSERT INTO mailer_campaignqueue (campaign_id, status, started_at) "
        "VALUES (:c, 'processing', now() - interval '31 minutes')",
        c=campaign,
    )
    await ensure_schedules(dev.client, dev.task_queue)
    async with dev.worker():
        result = await cli(dev, "doctor", "--json")
    data = report(result)
    assert result.returncode == 2
    stuck = check(data, "stuck_processing")
    assert stuck["level"] == "CRIT" and campaign in stuck["summary"]


async def test_quota_zero_with_an_old_sync_warns(
    dev: Harness,
    web: WebService,
) -> None:
    dev.add_sender(quota=0)
    dev.sql_exec("UPDATE mailer_smtpbzquota SET last_synced_at = now() - interval '3 hours'")
    await ensure_schedules(dev.client, dev.task_queue)
    async with dev.worker():
        result = await cli(dev, "doctor", "--json", env_overrides=unsubscribing(web))
    data = report(result)
    assert result.returncode == 1, data["checks"]
    assert levels(data)["quota"] == "WARN"
    assert {name for name, level in levels(data).items() if level != "OK"} == {"quota"}


@contextmanager
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a hung server)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


async def test_parts_down_are_reported_with_their_address_within_the_deadline(
    dev: Harness,
) -> None:
    closed = free_port()
    with silent_listener() as hung:
        result = await cli(
            dev,
            "doctor",
            "--json",
            env_overrides={
                "MAILER_TEMPORAL_ADDRESS": f"127.0.0.1:{hung}",
                "MAILER_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{closed}/mailer",
            },
            timeout=10,  # the doctor's own deadlines are 3 s per part
        )
    data = report(result)
    assert result.returncode == 2
    temporal, postgres = check(data, "temporal"), check(data, "postgres")
    assert temporal["level"] == postgres["level"] == "CRIT"
    assert f"Temporal at 127.0.0.1:{hung} unreachable (no answer within 3s)" in temporal["summary"]
    assert f"PostgreSQL at 127.0.0.1:{closed}/mailer unreachable" in postgres["summary"]


async def test_a_campaign_whose_workflow_is_gone_is_named_as_drift(dev: Harness) -> None:
    campaign = dev.ready_campaign(3)
    start, end = hours_excluding_now()
    async with dev.worker(working_hours_start=start, working_hours_end=end):
        started = await cli(dev, "start", campaign)  # deferred: outside working hours
        assert started.returncode == 0, started.stderr
        agreed = report(await cli(dev, "doctor", "--json"))
        assert levels(agreed)["drift"] == "OK"
        # Terminated from the Web UI: the table still says sending, no run is open.
        await dev.client.get_workflow_handle(f"campaign-{campaign}").terminate("by hand")
        data = report(await cli(dev, "doctor", "--json"))
    [check] = [c for c in data["checks"] if c["name"] == "drift"]
    assert check["level"] == "WARN"
    assert f"{campaign}: table sending, workflow gone (wants start)" in check["summary"]

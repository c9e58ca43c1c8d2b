"""Worker Deployments on the dev server: two worker builds, a campaign moving between them.

A campaign is auto-upgrade (mailer.runtime.deployment): started on build v1, asleep when v2
takes over and v1 stops, it finishes on v2 — a pinned campaign would wait for a v1 worker
nobody runs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.api.workflowservice.v1 import DescribeWorkerDeploymentRequest
from temporalio.client import Client

from bench.faults.rig import WorkerProcess
from mailer.runtime.deployment import Routing, Takeover, should_take_over
from mailer.stack import seed_data
from tests.support.harness import Harness, process_env, wait_for


def test_a_new_build_takes_over_once_and_an_old_one_never_takes_back() -> None:
    nothing_current = Routing(current_build_id="", ours_listed=True, ours_activated_before=False)
    assert should_take_over(nothing_current, "v1", Takeover.NEW)
    new_build = Routing(current_build_id="v1", ours_listed=True, ours_activated_before=False)
    assert should_take_over(new_build, "v2", Takeover.NEW)
    assert not should_take_over(new_build, "v2", Takeover.NEVER)
    # v1 restarting while v2 is current: it was current before, so it does not take back.
    old_build = Routing(current_build_id="v2", ours_listed=True, ours_activated_before=True)
    assert not should_take_over(old_build, "v1", Takeover.NEW)
    already = Routing(current_build_id="v2", ours_listed=True, ours_activated_before=True)
    assert not should_take_over(already, "v2", Takeover.NEW)
    unlisted = Routing(current_build_id="", ours_listed=False, ours_activated_before=False)
    assert not should_take_over(unlisted, "v1", Takeover.NEW)


async def _current_build(client: Client, deployment: str) -> str:
    try:
        response = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(namespace="default", deployment_name=deployment)
        )
    except Exception:  # not created until a versioned worker polls
        return ""
    return response.worker_deployment_info.routing_config.current_deployment_version.build_id


async def _build_of(client: Client, workflow_id: str) -> str:
    described = await client.get_workflow_handle(workflow_id).describe()
    info = described.raw_description.workflow_execution_info.versioning_info
    return info.deployment_version.build_id


async def test_a_sleeping_campaign_finishes_on_the_build_that_took_over(
    dev: Harness, tmp_path: Path
) -> None:
    deployment = f"mailer-{dev.task_queue}"
    url = dev.database_url
    seed_data.set_account(url, smtp_port=dev.sink.port)
    seed_data.set_quota(url, 0)  # the campaign sleeps on v1: quota_exhausted
    dev.stub.account.quota = 0
    campaign = seed_data.add_campaign(url, seed_data.add_user(url), 4)

    def worker(build_id: str) -> WorkerProcess:
        env = process_env(
            dev,
            MAILER_BUILD_ID=build_id,
            MAILER_DEPLOYMENT_NAME=deployment,
            MAILER_WORKING_HOURS_START="0",
            MAILER_WORKING_HOURS_END="24",
        )
        return WorkerProcess(env, tmp_path / f"worker-{build_id}.log")

    async def current_is(build_id: str) -> bool:
        return await _current_build(dev.client, deployment) == build_id

    v1 = worker("v1")
    v2 = None
    try:
        await wait_for(lambda: current_is("v1"), timeout=60, interval=0.5, what="v1 current")
        handle = await dev.start(campaign)
        await wait_for(
            lambda: dev.queue_row(campaign).get("defer_reason") == "quota_exhausted",
            timeout=60,
            what="the campaign asleep on v1",
        )
        assert await _build_of(dev.client, handle.id) == "v1"

        v2 = worker("v2")
        await wait_for(lambda: current_is("v2"), timeout=60, interval=0.5, what="v2 took over")
        v1.stop()
        dev.stub.account.quota = 1000
        await handle.signal("resume")  # wakes the sleep: its next task goes to v2
        result = await asyncio.wait_for(handle.result(), timeout=60)
        assert result.sent == 4 and len(dev.sink.handler.messages) == 4
        assert await _build_of(dev.client, handle.id) == "v2"

        # v1 restarting after v2 took over does not take back.
        v1 = worker("v1")
        log = tmp_path / "worker-v1.log"
        await wait_for(
            lambda: "current is v2" in log.read_text(), timeout=60, what="v1 leaving v2 current"
        )
        assert await current_is("v2")
    finally:
        v1.stop()
        if v2 is not None:
            v2.stop()

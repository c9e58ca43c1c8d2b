"""Reconcile at 10,000 campaigns: one listing of the running workflows instead of a describe
per campaign, and repairs only where a campaign's row still reads as it was listed (a turn
takes minutes at that size, and the listing grows stale while it runs). Dev server: the
listing needs a server with visibility."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
from temporalio.client import (
    Client,
    DescribeWorkflowInput,
    Interceptor,
    OutboundInterceptor,
    WorkflowExecutionDescription,
    WorkflowFailureError,
    WorkflowHandle,
)

from activities.campaign_requests import CampaignRequests
from activities.ledger import campaign_rows
from activities.reconciliation import Reconciliation, running_campaign_workflows
from db.engine import session_scope
from mailer.runtime.worker import build_worker
from tests.support.harness import (
    Harness,
    finished,
    hours_excluding_now,
    listed_as,
    state_is,
    wait_for,
)
from tests.support.interceptors import ActivityGate, QueriesSeen
from workflows.campaign import workflow_id_for
from workflows.contracts import CampaignResult
from workflows.requests import CampaignRow, queue_row_cleared
from workflows.states import QueueStatus


class DescribesSeen(Interceptor):
    """The workflow ids a client describes."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        seen = self.ids

        class Counting(OutboundInterceptor):
            async def describe_workflow(
                self, input: DescribeWorkflowInput
            ) -> WorkflowExecutionDescription:
                seen.append(input.id)
                return await super().describe_workflow(input)

        return Counting(next)


def row_of(harness: Harness, campaign: str) -> CampaignRow:
    with session_scope(harness.settings.sqlalchemy_url) as session:
        [row] = campaign_rows(session, [campaign])
    return row


def turn(harness: Harness, client: Client | None = None) -> Reconciliation:
    requests = CampaignRequests(harness.settings, client or harness.client)
    return Reconciliation(requests, datetime.now(UTC), harness.task_queue)


async def run_id(harness: Harness, campaign: str) -> str:
    description = await harness.client.get_workflow_handle(workflow_id_for(campaign)).describe()
    return description.run_id or ""


@asynccontextmanager
async def deferred_campaign(
    harness: Harness,
) -> AsyncIterator[tuple[str, WorkflowHandle[Any, Any]]]:
    """A campaign of 3 deferred outside working hours (which exclude the hour the test runs
    at), with its worker running while the context lasts."""
    campaign = harness.ready_campaign(3)
    start, end = hours_excluding_now()
    async with harness.worker(working_hours_start=start, working_hours_end=end):
        handle = await harness.start(campaign)
        await wait_for(lambda: state_is(handle, "deferred"), what="the deferral")
        yield campaign, handle


async def test_a_turn_describes_only_the_campaigns_the_listing_does_not_show_running(
    dev: Harness,
) -> None:
    waiting, terminated = dev.ready_campaign(3), dev.ready_campaign(3)
    start, end = hours_excluding_now()
    describes = DescribesSeen()
    config = dev.client.config()
    config["interceptors"] = [describes]
    counting = Client(**config)
    async with dev.worker(working_hours_start=start, working_hours_end=end):
        handles = [await dev.start(waiting), await dev.start(terminated)]
        for handle in handles:
            await wait_for(partial(state_is, handle, "deferred"), what="the deferral")
        await handles[1].terminate("gone, as by the Web UI's Terminate")

        async def listed_as_the_server_sees_them() -> bool:
            # (Other tests' campaigns may run on this server too: its namespace is shared.)
            running = await running_campaign_workflows(dev.client) or {}
            return (
                workflow_id_for(waiting) in running and workflow_id_for(terminated) not in running
            )

        await wait_for(listed_as_the_server_sees_them, what="the visibility listing")
        result = await turn(dev, counting).run()
        assert (result.restarted, result.resumed) == ([terminated], [])
        # The running one was taken from the listing; only the missing one was described.
        assert describes.ids == [workflow_id_for(terminated)]
        restarted = dev.client.get_workflow_handle(workflow_id_for(terminated))
        await wait_for(lambda: state_is(restarted, "deferred"), what="the restarted run")
        for campaign in (waiting, terminated):
            await dev.client.get_workflow_handle(workflow_id_for(campaign)).cancel()


async def test_a_campaign_that_closed_after_the_listing_is_not_restarted(dev: Harness) -> None:
    """Listed ``sending``; by the time the turn reaches it, its workflow was cancelled and
    wrote ``cancelled``: the row read again says so, and nothing is started."""
    async with deferred_campaign(dev) as (campaign, handle):
        listed = row_of(dev, campaign)
        assert listed.status == "sending"
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await finished(handle)
        closed_run = await run_id(dev, campaign)
        reconciliation = turn(dev)
        await reconciliation.check(listed)
        assert reconciliation.result.restarted == []
        assert await run_id(dev, campaign) == closed_run
        assert row_of(dev, campaign).status == "cancelled"


async def test_a_row_listed_before_its_deferral_was_written_does_not_wake_the_campaign(
    dev: Harness,
) -> None:
    """Listed while the run had not yet deferred (a pending queue row with no defer reason,
    as the playbook's resume SQL would leave it); by the time the turn queries the workflow,
    it is deferred. The row read again shows the deferral: no resume."""
    async with deferred_campaign(dev) as (campaign, handle):
        deferred = row_of(dev, campaign)
        assert deferred.defer_reason == "outside_hours"
        before_the_deferral = dataclasses.replace(
            deferred,
            queue_status=QueueStatus.PENDING,
            defer_reason="",
            deferred_until=None,
            consecutive_transient_errors=0,
        )
        reconciliation = turn(dev)
        await reconciliation.check(before_the_deferral)
        assert reconciliation.result.resumed == []
        assert await state_is(handle, "deferred")
        assert row_of(dev, campaign).defer_reason == "outside_hours"
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await finished(handle)


async def test_a_server_that_cannot_list_workflows_has_each_campaign_described(
    harness: Harness,
) -> None:
    """The time-skipping test server has no visibility (ListWorkflowExecutions is
    unimplemented): the turn describes each campaign, and still repairs. Here, one the old
    engine left ``sending`` with no workflow."""
    campaign = harness.ready_campaign(3)
    harness.sql_exec("UPDATE mailer_campaign SET status = 'sending' WHERE id = :c", c=campaign)
    assert await running_campaign_workflows(harness.client) is None
    async with harness.worker(working_hours_start=0, working_hours_end=24):
        result = await turn(harness).run()
        assert result.restarted == [campaign]
        run = harness.client.get_workflow_handle(
            workflow_id_for(campaign), result_type=CampaignResult
        )
        final = await finished(run)
    assert (final.status, final.sent) == ("sent", 3)


async def test_a_woken_campaigns_cleared_row_costs_its_workflow_no_query(dev: Harness) -> None:
    """A campaign woken and waiting for its batch to be picked up has a queue row that reads
    as the playbook's resume SQL leaves one (pending, nothing deferred). When 10,000
    deferred campaigns wake, thousands wait so in the task queue's backlog, and a query of
    each was a task on the very workers waking them (a replay, when not cached): the
    listing shows them sending, and the turn asks none of them."""
    campaign = dev.ready_campaign(3)
    queries = QueriesSeen()
    backlog = ActivityGate("send_batch")
    settings = dev.settings.model_copy(
        update={"working_hours_start": 0, "working_hours_end": 24, "rate_per_hour": 100_000}
    )
    async with build_worker(
        dev.client, settings, task_queue=dev.task_queue, interceptors=[queries, backlog]
    ):
        handle = await dev.start(campaign)
        try:
            await asyncio.wait_for(backlog.held.wait(), 30)
            await wait_for(
                lambda: listed_as(dev.client, campaign, "sending"),
                what="the listing to show it sending",
            )
            assert queue_row_cleared(row_of(dev, campaign)), row_of(dev, campaign)
            queries.names.clear()
            result = await turn(dev).run()
            assert (result.restarted, result.unstuck, result.resumed) == ([], [], [])
            assert queries.names == []
            assert await state_is(handle, "sending")
            assert queries.names == ["progress"]  # what the turn would have cost it
        finally:
            backlog.open()  # a failed assertion must not leave the worker's shutdown waiting
        final = await finished(handle)
    assert (final.status, final.sent) == ("sent", 3)

"""Recorded histories of campaigns (and the dispatcher) replay on the current workflow code.

A change to ``workflows/`` that would break campaigns already running (Temporal replays
their histories on the new code) fails here. Change workflow code behind
``workflow.patched(...)`` (or with worker versioning), then re-record with
``python -m tests.workflows.record_histories``; see docs/engine.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from workflows.campaign import CampaignWorkflow
from workflows.maintenance import DispatcherWorkflow, QuotaSyncWorkflow, ReconcileWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_the_recorded_scenarios_are_all_there() -> None:
    names = {path.stem for path in HISTORIES}
    assert names >= {
        "deferrals_pause_resume",
        "breaker_then_cancel",
        "cancelled_through_temporal",
        "continue_as_new",
        "domain_paced",
        # Recorded with the wake that goes straight to the batch (patch wake-without-reading).
        "deferrals_pause_resume-wake-without-reading",
        "breaker_then_cancel-wake-without-reading",
        "domain_paced-wake-without-reading",
        # Recorded with the loop's records and reads as local activities (patch local-ledger).
        "deferrals_pause_resume-local-ledger",
        "breaker_then_cancel-local-ledger",
        "domain_paced-local-ledger",
        "cancelled_through_temporal-local-ledger",
        # The tables' dispatcher, before and after it could be woken (patch
        # dispatch-wake-on-notify).
        "dispatcher_turns",
        "dispatcher_turns-woken",
    }


RUNNERS = {"sandboxed": SandboxedWorkflowRunner, "unsandboxed": UnsandboxedWorkflowRunner}


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("path", HISTORIES, ids=[path.stem for path in HISTORIES])
async def test_history_replays_on_the_current_code(path: Path, runner: str) -> None:
    """In the sandbox (the suite's) and as plain code (production's, MAILER_WORKFLOW_SANDBOX)."""
    data = json.loads(path.read_text())
    history = WorkflowHistory.from_json(f"replay-{path.stem}", data)
    replayer = Replayer(
        workflows=[CampaignWorkflow, DispatcherWorkflow, QuotaSyncWorkflow, ReconcileWorkflow],
        workflow_runner=RUNNERS[runner](),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None

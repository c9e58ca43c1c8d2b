"""How the worker runs workflow code: as plain code with a cache sized for a fleet of
sleeping campaigns in production, in the SDK's sandbox under the test suite."""

from __future__ import annotations

import pytest
from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from mailer.core.settings import load_settings
from mailer.runtime.worker import build_worker
from tests.support.harness import Harness


async def test_production_runs_workflows_unsandboxed_and_caches_ten_thousand(
    dev: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAILER_WORKFLOW_SANDBOX", raising=False)
    monkeypatch.delenv("MAILER_MAX_CACHED_WORKFLOWS", raising=False)
    production = load_settings(database_url=dev.database_url)
    config = build_worker(dev.client, production, task_queue=dev.task_queue).config()
    assert isinstance(config.get("workflow_runner"), UnsandboxedWorkflowRunner)
    assert config.get("max_cached_workflows") == 10_000


async def test_the_settings_choose_the_sandbox_and_the_cache(
    dev: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILER_WORKFLOW_SANDBOX", "true")
    monkeypatch.setenv("MAILER_MAX_CACHED_WORKFLOWS", "250")
    chosen = load_settings(database_url=dev.database_url)
    config = build_worker(dev.client, chosen, task_queue=dev.task_queue).config()
    assert isinstance(config.get("workflow_runner"), SandboxedWorkflowRunner)
    assert config.get("max_cached_workflows") == 250


async def test_the_suite_runs_every_workflow_sandboxed(dev: Harness) -> None:
    """So a workflow calling datetime.now(), random or I/O fails a test before production."""
    assert dev.settings.workflow_sandbox
    assert isinstance(dev.worker().config().get("workflow_runner"), SandboxedWorkflowRunner)

"""What a campaign's workflow starts with: its Web UI summary and details and its creator's
search attribute — also on a namespace made by an older release, which lacks it."""

from __future__ import annotations

import uuid

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from mailer.operations import control
from mailer.stack import seed_data
from mailer.stack.binaries import temporal_binary
from mailer.stack.smtp_sink import SmtpSink
from mailer.stack.smtpbz_stub import SmtpBzStubServer
from tests.support.harness import SERVER_STARTUP, on_the_dev_server
from workflows.campaign import workflow_id_for
from workflows.search_attributes import MAILER_CREATED_BY


async def _registered(env: WorkflowEnvironment) -> set[str]:
    listed = await env.client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=env.client.namespace)
    )
    return set(listed.custom_attributes)


async def test_a_namespace_lacking_the_creators_attribute_gets_it_and_the_start_goes_on(
    database_url: str, redis_url: str, sink: SmtpSink, stub: SmtpBzStubServer
) -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), dev_server_startup_timeout=SERVER_STARTUP
    )
    try:
        harness = on_the_dev_server(env.client, database_url, redis_url, sink, stub)
        settings = harness.settings.model_copy(
            update={
                "temporal_address": env.client.service_client.config.target_host,
                "task_queue": harness.task_queue,
            }
        )
        user = seed_data.add_user(database_url, "olga")
        seed_data.set_account(database_url, smtp_port=sink.port)
        seed_data.set_quota(database_url, 1_000_000)
        campaign = seed_data.add_campaign(database_url, user, 3, name="Новогодняя [/x]")
        assert MAILER_CREATED_BY.name not in await _registered(env)  # as an older release left it
        async with harness.worker():
            await control.start(settings, uuid.UUID(campaign))
            handle = env.client.get_workflow_handle(workflow_id_for(campaign))
            described = await handle.describe()
        assert described.typed_search_attributes.get(MAILER_CREATED_BY) == user
        assert await described.static_summary() == r"Новогодняя \[/x\] · 3 recipients · by olga"
        details = await described.static_details()
        assert details is not None and f"mailer status {campaign}" in details
    finally:
        await env.shutdown()

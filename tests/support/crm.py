"""The CRM's side of the tables in tests: its writes on a connection of its own, and what
they woke.

mailer's connections are named ``mailer…`` (db/engine.py) and the tables' triggers treat
only other connections' writes as requests, so these go in as the CRM's would."""

from __future__ import annotations

import psycopg

from mailer.stack import seed_data
from tests.support.harness import Harness
from workflows.maintenance import dispatcher_workflow_id


def crm_sql(harness: Harness, statement: str, **params: object) -> None:
    """SQL on a connection of the CRM's own (not named ``mailer``: its writes are requests)."""
    with seed_data.connection_as(harness.database_url, "crm") as conn:
        conn.execute(statement, params)


def crm_transaction(harness: Harness) -> psycopg.Connection[tuple[object, ...]]:
    """``with crm_transaction(harness) as conn:`` — the CRM's writes committed together at
    the end, as one commit (and one NOTIFY) the way the Celery engine left its rows."""
    return seed_data.connection_as(harness.database_url, "crm", autocommit=False)


def crm_queue(
    harness: Harness,
    campaign: str,
    *,
    connection: psycopg.Connection[tuple[object, ...]] | None = None,
    **row: object,
) -> None:
    """The CRM's queue row (:func:`mailer.stack.seed_data.queue_as_crm`), in ``connection``'s
    transaction when given."""
    seed_data.queue_as_crm(harness.database_url, campaign, connection=connection, **row)


async def dispatcher_wakes(harness: Harness) -> int:
    """The wake signals in the history of this harness's task queue's dispatcher."""
    handle = harness.client.get_workflow_handle(dispatcher_workflow_id(harness.task_queue))
    events = (await handle.fetch_history()).events
    return sum(event.HasField("workflow_execution_signaled_event_attributes") for event in events)

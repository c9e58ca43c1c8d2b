"""Every counter the worker exports, created at zero when it starts.

A counter whose series first appears at 1 hides that rise from ``increase()`` and
``rate()``: an alert on "any Redis error" would miss the first. So each series — the send
path's (:mod:`activities.metrics`) and the campaign workflow's (counted replay-safely through
the workflow's meter, whose series carry ``namespace``, ``task_queue`` and
``workflow_type``) — exists at 0 from the first scrape. The workflow's are created here with
the same name, description and labels as the workflow's meter gives them, so they are the
same series.
"""

from __future__ import annotations

from temporalio.common import MetricMeter

from activities import metrics
from workflows.campaign import BREAKER_TRIPS_METRIC, CAMPAIGN_WORKFLOW, DEFERRALS_METRIC
from workflows.states import DeferReason


def start_at_zero(meter: MetricMeter, namespace: str, task_queue: str) -> None:
    """Install the send path's counters on ``meter`` and create every series at 0."""
    worker = meter.with_additional_attributes({"namespace": namespace, "task_queue": task_queue})
    metrics.install(worker)
    campaign = worker.with_additional_attributes({"workflow_type": CAMPAIGN_WORKFLOW})
    deferrals = campaign.create_counter(*DEFERRALS_METRIC)
    for reason in DeferReason:
        deferrals.add(0, {"reason": reason.value})
    campaign.create_counter(*BREAKER_TRIPS_METRIC).add(0)

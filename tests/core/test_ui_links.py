"""Links into the Temporal Web UI: the campaign list with the query filled in."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

from mailer.core.ui_links import campaigns_query, list_link, workflow_link
from tests.support.harness import PROJECT_ROOT


def test_the_list_link_carries_the_query_the_ui_filters_by() -> None:
    query = campaigns_query("rate_per_hour")
    assert query == (
        'WorkflowType = "CampaignWorkflow" AND ExecutionStatus = "Running" '
        'AND MailerDeferReason = "rate_per_hour"'
    )
    link = list_link("http://127.0.0.1:8233", "default", query)
    parts = urlsplit(link)
    assert parts.path == "/namespaces/default/workflows"
    assert parse_qs(parts.query)["query"] == [query]


def test_every_campaign_or_finished_ones_too() -> None:
    assert campaigns_query() == 'WorkflowType = "CampaignWorkflow" AND ExecutionStatus = "Running"'
    assert campaigns_query(include_finished=True) == 'WorkflowType = "CampaignWorkflow"'


def test_a_reason_cannot_close_the_quotes_of_the_query() -> None:
    query = campaigns_query('x" OR WorkflowType != "y')
    assert query.endswith('MailerDeferReason = "x\\" OR WorkflowType != \\"y"')


def test_a_campaigns_page() -> None:
    assert workflow_link("http://ui", "default", "campaign-1") == (
        "http://ui/namespaces/default/workflows/campaign-1"
    )


def test_mailer_list_ui_prints_the_filtered_list() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailer.cli", "list", "--ui", "--reason", "outside_hours"],
        cwd=PROJECT_ROOT,
        env={
            **os.environ,
            "MAILER_ENV_FILES": "",
            "MAILER_TEMPORAL_UI_URL": "https://temporal.example.ru",
            "MAILER_TEMPORAL_NAMESPACE": "mailer",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    parts = urlsplit(result.stdout.strip())
    assert (parts.netloc, parts.path) == ("temporal.example.ru", "/namespaces/mailer/workflows")
    assert parse_qs(parts.query)["query"] == [campaigns_query("outside_hours")]

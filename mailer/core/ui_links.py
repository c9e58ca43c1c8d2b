"""Links into the Temporal Web UI (``MAILER_TEMPORAL_UI_URL``): one campaign's page, and the
workflow list filtered by a visibility query — what `mailer start` and `mailer list --ui`
print, so an operator lands on the right view with the query filled in."""

from __future__ import annotations

from urllib.parse import quote

CAMPAIGN_TYPE = "CampaignWorkflow"


def workflow_link(ui_url: str, namespace: str, workflow_id: str) -> str:
    return f"{ui_url}/namespaces/{quote(namespace)}/workflows/{quote(workflow_id)}"


def campaigns_query(reason: str | None = None, *, include_finished: bool = False) -> str:
    """``WorkflowType = "CampaignWorkflow" AND ExecutionStatus = "Running" AND
    MailerDeferReason = "rate_per_hour"`` (the reason's quotes escaped)."""
    terms = [f'WorkflowType = "{CAMPAIGN_TYPE}"']
    if not include_finished:
        terms.append('ExecutionStatus = "Running"')
    if reason:
        escaped = reason.replace("\\", "\\\\").replace('"', '\\"')
        terms.append(f'MailerDeferReason = "{escaped}"')
    return " AND ".join(terms)


def list_link(ui_url: str, namespace: str, query: str) -> str:
    return f"{ui_url}/namespaces/{quote(namespace)}/workflows?query={quote(query, safe='')}"

"""ProofEmailWorkflow: one ``mailer test-email``, visible in the Web UI as
``test-email-<campaign>-<request>``.

A workflow (not a direct call from the CLI) so the message goes out from a worker, through
exactly the campaign's SMTP path and account, and shows in Temporal's history. Its input is
the request's row id: the address stays in the database.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.interface import MailerActivityInterface
    from workflows.contracts import ProofEmailInput, ProofEmailResult
    from workflows.states import CAMPAIGN_REFUSED

TEST_EMAIL_WORKFLOW_PREFIX = "test-email-"


def proof_workflow_id(campaign_id: str, request_id: int) -> str:
    return f"{TEST_EMAIL_WORKFLOW_PREFIX}{campaign_id}-{request_id}"


# "TestEmailWorkflow": the registered type, kept for runs in flight.
@workflow.defn(name="TestEmailWorkflow")
class ProofEmailWorkflow:
    @workflow.run
    async def run(self, request: ProofEmailInput) -> ProofEmailResult:
        result = await workflow.execute_activity_method(
            MailerActivityInterface.send_proof_email,
            request,
            # An SMTP refusal is an answer (the result says it), not a retry; only the
            # database or Redis failing is retried, briefly: an operator is waiting.
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(
                maximum_attempts=3, non_retryable_error_types=[CAMPAIGN_REFUSED]
            ),
        )
        workflow.logger.info(
            "test email %d: %s%s",
            request.request_id,
            result.status,
            f" ({result.error})" if result.error else "",
        )
        return result

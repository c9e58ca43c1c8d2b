"""``mailer test-email``: one message of a campaign, to an address of the operator's."""

from __future__ import annotations

import asyncio
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from mailer.cli.support import (
    CampaignArg,
    JsonOption,
    campaign_id_arg,
    db_session,
    fail,
    print_json,
    reports_errors,
    settings,
)
from mailer.core.jsonable import jsonable
from mailer.operations import control
from mailer.operations.proofs import request_proof_email
from workflows.proof import proof_workflow_id
from workflows.states import ProofEmailStatus

app = typer.Typer()


@app.command("test-email")
@reports_errors
def proof_email(
    campaign_id: CampaignArg,
    to: Annotated[str, typer.Option("--to", help="Where to send the test message.")],
    as_user: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="User (name or id) whose hourly test-email throttle it counts against "
            "(default: the campaign's creator).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Send the campaign, rendered for its first recipient, to one address with "[TEST] "
    before the subject (any campaign state; counts against no campaign limit)."""
    parsed = campaign_id_arg(campaign_id)
    with db_session() as session:
        request = request_proof_email(session, parsed, to, as_user)
    result = asyncio.run(control.start_proof_email(settings(), parsed, request.request_id))
    workflow_id = proof_workflow_id(str(parsed), request.request_id)
    if as_json:
        print_json({"workflow_id": workflow_id, **jsonable(result, settings().timezone)})
    zone = ZoneInfo(settings().timezone)
    if result.status == ProofEmailStatus.REFUSED:
        allowed_at = (
            result.allowed_at.astimezone(zone).isoformat(timespec="minutes")
            if result.allowed_at
            else "the next hour"
        )
        raise fail(
            f"test email refused: user {request.requested_by} already sent "
            f"{result.used_this_hour} test emails this hour "
            f"(MAILER_THROTTLE_TEST_EMAIL_PER_HOUR={result.limit_per_hour}); "
            f"the next is allowed at {allowed_at}",
            1,
        )
    if result.status == ProofEmailStatus.FAILED:
        raise fail(f"test email not delivered ({result.error_class}): {result.error}", 1)
    if not as_json:
        print(
            f"test email sent to {request.address}: Message-ID {result.message_id} "
            f"({result.used_this_hour} of {result.limit_per_hour} this hour for "
            f"{request.requested_by}; workflow {workflow_id})"
        )

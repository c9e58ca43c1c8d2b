"""One test email (``mailer test-email``): the campaign rendered for its first recipient,
sent to the operator's address through the campaign's own SMTP account.

It counts against its requester's ``MAILER_THROTTLE_TEST_EMAIL_PER_HOUR`` (a Redis counter
per clock hour) and nothing else: its send log row is ``provider = 'smtp_test'`` with no
recipient, which the daily limit, the hourly window and the playbook's SQL do not count.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

import aiosmtplib
from sqlalchemy import select
from sqlalchemy.orm import Session

from activities.claims import account_view, campaign_view
from activities.ratelimit import take_throttle, throttle_key
from activities.sending import unsubscribe_links
from activities.smtp_session import SmtpSessionFailed, close_smtp, open_smtp
from db.engine import session_scope
from db.models import PROVIDER_SMTP_TEST, Campaign, CampaignRecipient, ProofEmail, SendLog
from db.queries import get_account
from mailer.core.settings import Settings
from mailer.mail.messages import UnsendableMessage, build_message, proof_message_id_for
from mailer.mail.smtp_replies import ErrorClass, SmtpFailure, Stage, classify_exception
from mailer.mail.unsubscribe_tokens import Target, TargetKind
from mailer.mail.views import AccountView, CampaignView, RecipientView
from workflows.contracts import ProofEmailInput, ProofEmailResult
from workflows.states import ProofEmailStatus, SendLogStatus
from workflows.working_hours import next_clock_hour

SUBJECT_PREFIX = "[TEST] "
THROTTLE_KIND = "test_email"


class ProofEmailUnavailable(Exception):
    """The request cannot be sent at all (its row, campaign or account is gone)."""


@dataclass(frozen=True)
class _Job:
    request_id: int
    status: ProofEmailStatus
    requested_by_id: int
    to: str
    campaign: CampaignView
    account: AccountView
    rendered_for: RecipientView
    message_id: str
    error: str


def _load(session: Session, request_id: int) -> _Job:
    request = session.get(ProofEmail, request_id)
    if request is None:
        raise ProofEmailUnavailable(f"no test email request {request_id}")
    campaign = session.get(Campaign, request.campaign_id)
    account = get_account(session)
    if campaign is None:
        raise ProofEmailUnavailable(f"campaign {request.campaign_id} is gone")
    if account is None:
        raise ProofEmailUnavailable("no mail account: configure it with `mailer account set`")
    first = session.scalar(
        select(CampaignRecipient)
        .where(CampaignRecipient.campaign_id == campaign.id)
        .order_by(CampaignRecipient.id)
        .limit(1)
    )
    rendered_for = (
        RecipientView(first.id, first.email, first.name, dict(first.variables or {}))
        if first is not None
        else RecipientView(0, request.email, "", {})
    )
    view = campaign_view(campaign, account)
    return _Job(
        request_id=request.id,
        status=ProofEmailStatus(request.status),
        requested_by_id=request.requested_by_id,
        to=request.email,
        campaign=CampaignView(
            id=view.id,
            created_by_id=view.created_by_id,
            subject=SUBJECT_PREFIX + view.subject,
            html_body=view.html_body,
            text_body=view.text_body,
            from_email=view.from_email,
            from_name=view.from_name,
        ),
        account=account_view(account),
        rendered_for=rendered_for,
        message_id=request.message_id
        or proof_message_id_for(campaign.id, request.id, view.from_email),
        error=request.error,
    )


def _record(
    session: Session,
    job: _Job,
    now: datetime,
    status: ProofEmailStatus,
    failure: SmtpFailure | None = None,
) -> None:
    """The request's outcome, and (for a message the server took or refused) its send log
    row: provider 'smtp_test', no recipient."""
    request = session.get(ProofEmail, job.request_id)
    assert request is not None
    request.status = status.value
    request.finished_at = now
    request.error = failure.describe() if failure else ""
    if status == ProofEmailStatus.REFUSED:
        return
    request.message_id = job.message_id
    session.add(
        SendLog(
            campaign_id=job.campaign.id,
            recipient_id=None,
            email=job.to,
            provider=PROVIDER_SMTP_TEST,
            status=(SendLogStatus.SENT if failure is None else SendLogStatus.FAILED).value,
            message_id=job.message_id,
            smtp_code=failure.code if failure else None,
            error=failure.describe(redact=False) if failure else "",
            created_at=now,
        )
    )


async def _deliver(job: _Job, now: datetime, settings: Settings) -> SmtpFailure | None:
    """Send the message; the failure, classified, or ``None`` when the server took it."""
    try:
        smtp = await open_smtp(job.account, settings.smtp_timeout_seconds)
    except SmtpSessionFailed as failed:
        return failed.failure
    try:
        message = build_message(
            job.campaign,
            RecipientView(0, job.to, "", {}),
            now,
            server_smtputf8=smtp.supports_extension("smtputf8"),
            rendered_for=job.rendered_for,
            message_id=job.message_id,
            unsubscribe=unsubscribe_links(
                settings, Target(TargetKind.TEST_EMAIL, job.campaign.id, job.request_id)
            ),
            return_path=settings.return_path,
        )
        await smtp.sendmail(
            message.sender,
            [message.recipient],
            message.data,
            mail_options=["SMTPUTF8"] if message.needs_smtputf8 else None,
        )
    except UnsendableMessage as exc:
        return SmtpFailure(ErrorClass.RECIPIENT, Stage.DATA, None, str(exc))
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
        return classify_exception(exc, Stage.MAIL)
    finally:
        await close_smtp(smtp)
    return None


async def send_proof_email(
    settings: Settings, request: ProofEmailInput, now: datetime
) -> ProofEmailResult:
    """Send the requested test email once (a retried activity finds it done and says so)."""
    url = settings.sqlalchemy_url

    def load() -> _Job:
        with session_scope(url) as session:
            return _load(session, request.request_id)

    def record(status: ProofEmailStatus, failure: SmtpFailure | None = None) -> None:
        with session_scope(url) as session:
            _record(session, job, now, status, failure)

    job = await asyncio.to_thread(load)
    if job.status != ProofEmailStatus.REQUESTED:  # a retry after the outcome was written
        return ProofEmailResult(job.status, job.message_id, error=job.error)
    limit = settings.throttle_test_email_per_hour
    key = throttle_key(THROTTLE_KIND, job.requested_by_id, now, settings.timezone)
    allowed, used = await asyncio.to_thread(
        take_throttle, settings.redis_connection_url, key, limit
    )
    if not allowed:
        await asyncio.to_thread(record, ProofEmailStatus.REFUSED)
        return ProofEmailResult(
            ProofEmailStatus.REFUSED,
            allowed_at=next_clock_hour(now, settings.timezone),
            used_this_hour=used,
            limit_per_hour=limit,
        )
    failure = await _deliver(job, now, settings)
    status = ProofEmailStatus.SENT if failure is None else ProofEmailStatus.FAILED
    await asyncio.to_thread(record, status, failure)
    return ProofEmailResult(
        status,
        job.message_id,
        error_class=failure.error_class.value if failure else "",
        error=failure.describe() if failure else "",
        used_this_hour=used,
        limit_per_hour=limit,
    )

"""The worker's implementation of :class:`activities.interface.MailerActivityInterface`.

``MailerActivities`` holds what the activities share in one worker process (settings,
the database engine, the rate limiter) and exposes each activity as a method.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.campaign_requests import CampaignRequests
from activities.interface import MailerActivityInterface
from activities.ledger import (
    CampaignRefused,
    api_key,
    campaigns_deferred_on,
    mark_scheduled,
    mark_started,
    quota_available,
    record_state,
    start_campaign,
    store_quota,
    take_snapshot,
)
from activities.proofs import ProofEmailUnavailable, send_proof_email
from activities.quota import QuotaSyncError, fetch_quota, log_sync
from activities.ratelimit import RateLimiter, take_throttle, throttle_key
from activities.reconciliation import Reconciliation
from activities.sending import BatchHooks, BatchSender
from db.engine import get_engine, session_scope
from mailer.core.reachability import DATABASE_UNREACHABLE, REACHABILITY
from mailer.core.settings import Settings
from mailer.mail.smtp_replies import redact_addresses
from workflows.contracts import (
    DispatchInput,
    DispatchResult,
    ProofEmailInput,
    ProofEmailResult,
    ReconcileInput,
    ReconcileResult,
    RecordStateInput,
    RecordStateResult,
    SendBatchInput,
    SendBatchResult,
    SnapshotInput,
    SnapshotResult,
    StartCampaignInput,
    StartCampaignResult,
    SyncQuotaInput,
    SyncQuotaResult,
)
from workflows.states import (
    CAMPAIGN_REFUSED,
    CampaignStatus,
    DeferReason,
)

log = logging.getLogger(__name__)


@contextmanager
def activity_errors() -> Iterator[None]:
    """What an activity's failure carries into Temporal's history and the logs.

    A refused campaign is final: a non-retryable error whose message says why. A database
    error (retried by Temporal) keeps its first line with addresses redacted: the driver's
    DETAIL quotes the failing row, and SQLAlchemy the statement's parameters, both of
    which may hold recipients' addresses.
    """
    try:
        yield
        REACHABILITY.up("PostgreSQL")
    except CampaignRefused as refused:
        raise ApplicationError(str(refused), type=CAMPAIGN_REFUSED, non_retryable=True) from None
    except OperationalError as error:
        # Cannot connect (or the connection died): one ERROR line until it is back.
        reason = redact_addresses(_first_line(error))
        REACHABILITY.down("PostgreSQL", _database_address(error), reason)
        raise ApplicationError(
            f"database unreachable: {reason}", type=DATABASE_UNREACHABLE
        ) from None
    except SQLAlchemyError as error:
        raise ApplicationError(
            f"database error: {redact_addresses(_first_line(error))}", type=type(error).__name__
        ) from None


def _first_line(error: SQLAlchemyError) -> str:
    """The driver's first line (its DETAIL, which may quote a row, is left out)."""
    reason = str(error.orig) if isinstance(error, DBAPIError) and error.orig else str(error)
    return reason.strip().splitlines()[0] if reason.strip() else type(error).__name__


def _database_address(error: SQLAlchemyError) -> str:
    connection = getattr(getattr(error, "orig", None), "pgconn", None)
    host = getattr(connection, "host", b"") or b""
    port = getattr(connection, "port", b"") or b""
    if host:
        return f"{host.decode(errors='replace')}:{port.decode(errors='replace')}"
    return "MAILER_DATABASE_URL"


def attempt_token(workflow_run_id: str, activity_id: str, attempt: int) -> str:
    """One send attempt's identity, as its claims carry it (36 characters)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{workflow_run_id}/{activity_id}/{attempt}"))


class MailerActivities(MailerActivityInterface):
    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self.settings = settings
        self.client = client  # for the reconcile, which asks Temporal what is running
        self.engine = get_engine(settings.sqlalchemy_url)
        self.limiter = RateLimiter(settings.redis_connection_url)
        self.sender = BatchSender(settings, self.engine, self.limiter)

    @property
    def all(self) -> list[Callable[..., Any]]:
        return [
            self.start_campaign,
            self.load_snapshot,
            self.send_batch,
            self.record_state,
            self.sync_quota,
            self.reconcile,
            self.dispatch,
            self.send_proof_email,
        ]

    @activity.defn
    def start_campaign(self, request: StartCampaignInput) -> StartCampaignResult:
        """Check the campaign may start (exists, ready, size, the creator's start throttle);
        mark it started, or, for a scheduled start, leave it ``ready`` with its start time."""
        campaign_id = uuid.UUID(request.campaign_id)
        settings = self.settings
        with activity_errors(), session_scope(settings.sqlalchemy_url) as session:
            campaign = start_campaign(session, campaign_id, request.now, settings)
            counted = request.counted or campaign.status == CampaignStatus.SENDING
            if not counted and campaign.created_by_id is not None:
                key = throttle_key(
                    "campaign_start", campaign.created_by_id, request.now, settings.timezone
                )
                allowed, used = take_throttle(
                    settings.redis_connection_url, key, settings.throttle_campaign_start_per_hour
                )
                if not allowed:
                    raise CampaignRefused(
                        f"user {campaign.created_by_id} already started {used} campaigns "
                        "this hour "
                        f"(MAILER_THROTTLE_CAMPAIGN_START_PER_HOUR="
                        f"{settings.throttle_campaign_start_per_hour})"
                    )
            if request.scheduled_for is not None:
                mark_scheduled(session, campaign_id, request.scheduled_for, request.now)
            else:
                mark_started(session, campaign_id, request.now)
            snapshot = take_snapshot(session, campaign_id, request.now, settings)
        return StartCampaignResult(snapshot=snapshot)

    @activity.defn
    async def load_snapshot(self, request: SnapshotInput) -> SnapshotResult:
        """The campaign's counts and current limits; optionally sync the quota first."""
        url = self.settings.sqlalchemy_url
        if request.sync_quota:
            await self._sync_quota(request)

        def read() -> SnapshotResult:
            with session_scope(url) as session:
                snapshot = take_snapshot(
                    session, uuid.UUID(request.campaign_id), request.now, self.settings
                )
            return SnapshotResult(snapshot=snapshot)

        with activity_errors():
            return await asyncio.to_thread(read)

    @activity.defn
    async def sync_quota(self, request: SyncQuotaInput) -> SyncQuotaResult:
        """The scheduled sync: the provider's quota into mailer_smtpbzquota, and which
        campaigns wait for it."""

        def read() -> tuple[int, list[str]]:
            with session_scope(self.settings.sqlalchemy_url) as session:
                return quota_available(session), campaigns_deferred_on(
                    session, DeferReason.QUOTA_EXHAUSTED
                )

        with activity_errors():
            error = await self._sync_quota(SnapshotInput(campaign_id="", now=request.now))
            available, deferred = await asyncio.to_thread(read)
        return SyncQuotaResult(available, error, deferred)

    @activity.defn
    async def reconcile(self, request: ReconcileInput) -> ReconcileResult:
        """Repair drift between the tables and Temporal (see :mod:`activities.reconciliation`)."""
        with activity_errors():
            turn = Reconciliation(self._requests(), request.now, activity.info().task_queue)
            return await turn.run()

    @activity.defn
    async def dispatch(self, request: DispatchInput) -> DispatchResult:
        """Carry out the CRM's requests written to the tables since the last turn."""
        with activity_errors():
            return await self._requests().dispatch(request.now, activity.info().task_queue)

    def _requests(self) -> CampaignRequests:
        if self.client is None:
            raise ApplicationError("this activity needs a Temporal client", non_retryable=True)
        return CampaignRequests(self.settings, self.client)

    async def _sync_quota(self, request: SnapshotInput) -> str:
        url = self.settings.sqlalchemy_url

        def key() -> str:
            with session_scope(url) as session:
                return api_key(session)

        error = ""
        numbers = None
        try:
            numbers = await fetch_quota(self.settings.smtp_bz_api_url, await asyncio.to_thread(key))
        except QuotaSyncError as exc:
            error = str(exc)

        def store() -> int:
            with session_scope(url) as session:
                return store_quota(session, request.now, numbers, error=error)

        available = await asyncio.to_thread(store)
        log_sync(request.now, available, error)
        return error

    @activity.defn
    async def send_batch(self, request: SendBatchInput) -> SendBatchResult:
        """Send up to ``max_messages`` pending recipients (see :mod:`activities.sending`)."""
        info = activity.info()
        hooks = BatchHooks(
            heartbeat=lambda sent, failed: activity.heartbeat(sent, failed),
            should_stop=activity.is_worker_shutdown,
            attempt_token=attempt_token(info.workflow_run_id or "", info.activity_id, info.attempt),
            # The time this attempt started (server time: simulated in tests and forecasts),
            # never the "now" the workflow computed before an earlier attempt.
            now=info.started_time or request.now,
        )
        with activity_errors():
            return await self.sender.send_batch(request, hooks)

    @activity.defn(name="send_test_email")  # the registered name, kept for runs in flight
    async def send_proof_email(self, request: ProofEmailInput) -> ProofEmailResult:
        """Send one ``mailer test-email`` request (see :mod:`activities.proofs`)."""
        now = activity.info().started_time
        with activity_errors():
            try:
                return await send_proof_email(self.settings, request, now)
            except ProofEmailUnavailable as exc:
                raise CampaignRefused(str(exc)) from None

    @activity.defn
    def record_state(self, request: RecordStateInput) -> RecordStateResult:
        """Mirror a state change into mailer_campaign / mailer_campaignqueue."""
        campaign_id = uuid.UUID(request.campaign_id)
        with activity_errors(), session_scope(self.settings.sqlalchemy_url) as session:
            applied = record_state(
                session,
                campaign_id,
                request.now,
                campaign_status=request.campaign_status,
                queue_status=request.queue_status,
                defer_reason=request.defer_reason,
                deferred_until=request.deferred_until,
                consecutive_transient_errors=request.consecutive_transient_errors,
                last_error=request.last_error,
                expected_statuses=request.expected_statuses,
            )
            snapshot = take_snapshot(session, campaign_id, request.now, self.settings)
        return RecordStateResult(snapshot=snapshot, applied=applied)

"""What mailer's activities are called, what each takes and what each returns.

Workflows call activities through these declarations
(``workflow.execute_activity_method(MailerActivityInterface.send_batch, …)``), so mypy
checks every call and a rename cannot break at run time. This module imports only the
contracts: a workflow may import it without pulling the database, Redis or SMTP clients
into its sandbox. :class:`activities.mailer_activities.MailerActivities` implements it.
"""

from __future__ import annotations

from temporalio import activity

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


class MailerActivityInterface:
    """The activity declarations; every method is overridden by the worker's implementation."""

    @activity.defn
    def start_campaign(self, request: StartCampaignInput) -> StartCampaignResult:
        """Check the campaign may start (exists, ready, size, the creator's start throttle)."""
        raise NotImplementedError

    @activity.defn
    async def load_snapshot(self, request: SnapshotInput) -> SnapshotResult:
        """The campaign's counts and current limits; optionally sync the quota first."""
        raise NotImplementedError

    @activity.defn
    async def send_batch(self, request: SendBatchInput) -> SendBatchResult:
        """Send up to ``max_messages`` pending recipients over one SMTP connection."""
        raise NotImplementedError

    @activity.defn
    def record_state(self, request: RecordStateInput) -> RecordStateResult:
        """Mirror a state change into mailer_campaign / mailer_campaignqueue."""
        raise NotImplementedError

    @activity.defn
    async def sync_quota(self, request: SyncQuotaInput) -> SyncQuotaResult:
        """The provider's quota into mailer_smtpbzquota, and which campaigns wait for it."""
        raise NotImplementedError

    @activity.defn
    async def reconcile(self, request: ReconcileInput) -> ReconcileResult:
        """Restart campaigns the database says are active but Temporal does not run."""
        raise NotImplementedError

    @activity.defn
    async def dispatch(self, request: DispatchInput) -> DispatchResult:
        """Start, pause, resume or cancel the campaigns whose rows the CRM changed."""
        raise NotImplementedError

    @activity.defn(name="send_test_email")  # the registered name, kept for runs in flight
    async def send_proof_email(self, request: ProofEmailInput) -> ProofEmailResult:
        """Send one ``mailer test-email`` request (its throttle, then SMTP)."""
        raise NotImplementedError

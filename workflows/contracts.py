"""The dataclasses passed between the campaign workflow and its activities.

One input and one output per activity, so fields can be added without breaking histories.
They carry ids, counts and limits only: never addresses or secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from workflows.states import (
    CampaignStatus,
    ProofEmailStatus,
    QueueStatus,
    SendOutcome,
    WorkflowState,
)


@dataclass
class Limits:
    """Everything the gates need, read fresh each time round the loop."""

    timezone: str = "Europe/Moscow"
    working_hours_start: int = 9
    working_hours_end: int = 18
    rate_per_hour: int = 100
    per_user_daily_limit: int = 0  # 0: no daily limit
    circuit_breaker_threshold: int = 10
    transient_retry_delay_minutes: float = 5
    send_batch_size: int = 500
    continue_as_new_events: int = 5000
    send_heartbeat_timeout_seconds: int = 5
    send_batch_max_attempts: int = 5
    # The calendar (mailer/core/working_days.py): the weekdays that work (0 = Monday), and
    # the ISO dates closed (holidays) or opened (transferred working days) this year and next.
    working_days: list[int] = field(default_factory=lambda: list(range(7)))
    closed_dates: list[str] = field(default_factory=list)
    open_dates: list[str] = field(default_factory=list)
    # MAILER_RECIPIENT_TIMEZONES: the working hours hold in each recipient's own zone.
    recipient_timezones: bool = False


@dataclass
class Snapshot:
    """The campaign and its limits as the database sees them at ``taken_at``."""

    limits: Limits
    quota_available: int
    # 0 when the account has no daily limit (then nothing is held against it, so not read).
    sent_today_by_creator: int
    active_campaigns: int
    pending: int
    sent: int
    failed: int
    # mailer_campaign.status as the database has it now: an operator's SQL may have changed
    # it ('paused' by the playbook's runbook), and the workflow honours that.
    campaign_status: str = ""
    # With recipient time zones: the zones of the pending recipients ('' is MAILER_TIMEZONE).
    pending_zones: list[str] = field(default_factory=list)


@dataclass
class StartCampaignInput:
    campaign_id: str
    now: datetime
    # A scheduled start: check the campaign and count the creator's start now, but leave it
    # ``ready`` with the time in its queue row's ``deferred_until``.
    scheduled_for: datetime | None = None
    # The start of a campaign scheduled earlier: its start was counted when scheduled.
    counted: bool = False


@dataclass
class StartCampaignResult:
    snapshot: Snapshot


@dataclass
class SnapshotInput:
    campaign_id: str
    now: datetime
    sync_quota: bool = False  # ask the provider for the quota first


@dataclass
class SnapshotResult:
    snapshot: Snapshot


@dataclass
class SendBatchInput:
    campaign_id: str
    now: datetime
    max_messages: int


@dataclass
class SendBatchResult:
    outcome: SendOutcome
    sent: int
    failed: int
    snapshot: Snapshot
    error: str = ""
    deferred: int = 0  # recipients refused with a 4xx, to be tried again later
    retry_at: datetime | None = None  # with RECIPIENTS_WAITING: the earliest retry


@dataclass
class RecordStateInput:
    """A state change mirrored to mailer_campaign / mailer_campaignqueue."""

    campaign_id: str
    now: datetime
    campaign_status: CampaignStatus
    queue_status: QueueStatus
    defer_reason: str = ""
    deferred_until: datetime | None = None
    consecutive_transient_errors: int = 0
    last_error: str = ""
    # Compare-and-set: written only if mailer_campaign.status is one of these now, so a
    # stale writer never overwrites an operator's decision (empty: unconditionally).
    expected_statuses: list[CampaignStatus] = field(default_factory=list)


@dataclass
class RecordStateResult:
    snapshot: Snapshot
    applied: bool = True


@dataclass
class CarriedState:
    """What survives continue-as-new; everything else is re-read from the database."""

    consecutive_transient_errors: int = 0
    transient_until: datetime | None = None
    paused: bool = False
    # Who paused it (workflows.transitions.PauseCause; empty in state carried by older runs).
    paused_by: str = ""
    pause_reason: str = ""
    # The defer_reason a pause keeps (the circuit breaker keeps "transient_error").
    paused_defer_reason: str = ""
    last_error: str = ""
    runs: int = 1
    # A deferral taken over with the campaign (from the old engine, or a terminated run's
    # queue row): nothing is sent before ``held_until``; the row's reason is shown meanwhile.
    held_reason: str = ""
    held_until: datetime | None = None


@dataclass
class DispatchInput:
    now: datetime


@dataclass
class DispatchResult:
    """What the CRM's requests in the tables led to, by campaign id."""

    started: list[str]
    paused: list[str]
    resumed: list[str]
    cancelled: list[str]
    more: bool = False  # requests were left for the next turn
    rescheduled: list[str] = field(default_factory=list)  # scheduled starts moved


@dataclass
class CampaignInput:
    campaign_id: str
    carried: CarriedState | None = None
    # A scheduled start (``mailer start --at``): the campaign waits, unstarted, until then.
    start_at: datetime | None = None


@dataclass
class RescheduleInput:
    """The ``reschedule`` update's: the scheduled start's new time (now or later)."""

    start_at: datetime


@dataclass
class CampaignResult:
    campaign_id: str
    status: WorkflowState
    sent: int
    failed: int
    pending: int


@dataclass
class Progress:
    """The ``progress`` query's answer."""

    campaign_id: str
    state: WorkflowState
    defer_reason: str = ""
    deferred_until: datetime | None = None
    pause_reason: str = ""
    last_error: str = ""
    consecutive_transient_errors: int = 0
    pending: int = 0
    sent: int = 0
    failed: int = 0
    runs: int = 1
    # A scheduled start not yet reached (state ``scheduled``, or ``paused`` before it).
    scheduled_for: datetime | None = None


@dataclass
class SyncQuotaInput:
    now: datetime


@dataclass
class SyncQuotaResult:
    emails_available: int
    error: str = ""
    # Campaigns deferred on quota_exhausted, to wake when quota is back.
    deferred_on_quota: list[str] | None = None


@dataclass
class QuotaSyncResult:
    emails_available: int
    error: str
    woken: int


@dataclass
class ReconcileInput:
    now: datetime


@dataclass
class ReconcileResult:
    """Drift found and repaired between the database and Temporal."""

    restarted: list[str]  # campaigns sending/paused in the DB with no running workflow
    unstuck: list[str]  # queue rows 'processing' with no live run, set back to 'pending'
    # Deferred or breaker-paused campaigns whose queue row an operator cleared with the
    # playbook's "resume" SQL: signalled to resume.
    resumed: list[str] = field(default_factory=list)


@dataclass
class ProofEmailInput:
    """A ``mailer_testemail`` row to send (the address stays in the table)."""

    request_id: int


@dataclass
class ProofEmailResult:
    status: ProofEmailStatus
    message_id: str = ""
    # With FAILED: the error's class and the server's reply, addresses redacted.
    error_class: str = ""
    error: str = ""
    # With REFUSED: when the next test email is allowed; this hour's count and the limit.
    allowed_at: datetime | None = None
    used_this_hour: int = 0
    limit_per_hour: int = 0

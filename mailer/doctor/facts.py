"""What the doctor observed: one dataclass per part, nothing decided yet."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class Poller:
    identity: str
    last_access: datetime | None


@dataclass
class ScheduleFacts:
    schedule_id: str
    found: bool = True
    paused: bool = False
    every: timedelta | None = None
    last_run: datetime | None = None
    next_run: datetime | None = None


@dataclass
class FailingWorkflowTask:
    """A campaign whose workflow task keeps failing (a non-determinism error after a
    deploy, or a bug): Temporal retries it and the campaign stands still."""

    campaign_id: str
    attempt: int


@dataclass
class Drift:
    """A campaign the tables and Temporal see differently: ``workflow`` is the run's state
    (``gone`` when no run is open) and ``wanted`` what its row asks of it."""

    campaign_id: str
    table_status: str
    workflow: str
    wanted: str


@dataclass
class TemporalFacts:
    address: str
    namespace: str
    task_queue: str
    error: str = ""  # '' when reachable
    workflow_pollers: list[Poller] = field(default_factory=list)
    activity_pollers: list[Poller] = field(default_factory=list)
    # A poller not seen this long is a stopped worker's (MAILER_DOCTOR_POLLER_GONE_SECONDS).
    poller_gone_after: timedelta = timedelta(minutes=2)
    schedules: list[ScheduleFacts] = field(default_factory=list)
    failing_workflow_tasks: list[FailingWorkflowTask] = field(default_factory=list)
    # Campaigns whose row and workflow disagree with no CRM request to explain it.
    drift: list[Drift] = field(default_factory=list)

    @property
    def reachable(self) -> bool:
        return not self.error


@dataclass
class CampaignFacts:
    campaign_id: str
    name: str
    status: str
    queue_status: str
    defer_reason: str
    deferred_until: datetime | None
    consecutive_transient_errors: int
    pending: int
    sent: int
    failed: int


@dataclass
class DeferReasonCount:
    reason: str
    campaigns: int
    earliest_resume: datetime | None


@dataclass
class StuckProcessing:
    campaign_id: str
    started_at: datetime | None


@dataclass
class LockHolder:
    """A session holding a lock one of mailer's statements waits for. PostgreSQL shows
    another role's ``state`` and transaction start only to a superuser or
    pg_read_all_stats: ``None`` here when hidden."""

    pid: int
    application: str
    state: str | None
    transaction_age: timedelta | None
    client: str  # its address, '' for a local socket or when hidden


@dataclass
class LockWait:
    """One of mailer's statements waiting for a row or table lock another session holds
    (an operator's transaction left open, say): its batch stands still meanwhile."""

    pid: int
    application: str
    waiting: timedelta
    holders: list[LockHolder] = field(default_factory=list)


@dataclass
class QuotaFacts:
    emails_available: int
    emails_limit: int
    last_synced_at: datetime | None
    sync_error: str


@dataclass
class DatabaseFacts:
    address: str
    error: str = ""
    campaigns: list[CampaignFacts] = field(default_factory=list)
    defer_reasons: list[DeferReasonCount] = field(default_factory=list)
    stuck: list[StuckProcessing] = field(default_factory=list)
    queue_depth: int = 0  # queue rows 'pending' (the seed's alert)
    quota: QuotaFacts | None = None
    sent_this_hour: int = 0  # the send log's count for the clock hour
    # The CRM's writes not yet carried out by the dispatcher (mailer_request).
    crm_requests: int = 0
    oldest_crm_request_at: datetime | None = None
    # Workers' connections LISTENing for those writes (MAILER_LISTEN_FOR_REQUESTS): with
    # none, the dispatcher carries them out at its own 10 s turn.
    crm_request_listeners: int = 0
    lock_waits: list[LockWait] = field(default_factory=list)  # the longest first

    @property
    def reachable(self) -> bool:
        return not self.error


@dataclass
class RedisFacts:
    address: str
    error: str = ""
    rate_key: str = ""
    rate_count: int | None = None  # None: the window has no key yet this hour
    # Seconds the Celery engine's lock still lives (None: not held): that engine may send.
    old_engine_lock_ttl: int | None = None

    @property
    def reachable(self) -> bool:
        return not self.error


@dataclass
class UnsubscribeFacts:
    """The one-click unsubscribe links: signed at all, and does `mailer web` answer."""

    configured: bool  # MAILER_UNSUBSCRIBE_SECRET is set
    url: str  # MAILER_UNSUBSCRIBE_BASE_URL
    error: str = ""

    @property
    def reachable(self) -> bool:
        return not self.error


@dataclass
class Facts:
    now: datetime
    timezone: str
    rate_per_hour: int
    circuit_breaker_threshold: int
    temporal: TemporalFacts
    database: DatabaseFacts
    redis: RedisFacts
    unsubscribe: UnsubscribeFacts | None = None

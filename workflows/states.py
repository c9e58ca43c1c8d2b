"""Every name mailer gives a state, a reason or an outcome, defined once.

The seed's words (campaign, queue and recipient statuses, defer reasons) are what the
playbook's SQL reads, so their values never change. They live here, in the deterministic
half, because the workflow uses them too; ``db.models`` builds its CHECK constraints from
the same enums.
"""

from __future__ import annotations

import enum


class CampaignStatus(enum.StrEnum):
    """``mailer_campaign.status``."""

    DRAFT = "draft"  # reserved for the CRM's editor; the CLI creates campaigns ready
    READY = "ready"  # created, not started
    SENDING = "sending"  # its workflow is running (sending or deferred)
    PAUSED = "paused"  # by an operator or the circuit breaker; resumable
    SENT = "sent"  # nothing pending any more
    CANCELLED = "cancelled"


FINISHED_CAMPAIGN_STATUSES = (CampaignStatus.SENT, CampaignStatus.CANCELLED)
ACTIVE_CAMPAIGN_STATUSES = (CampaignStatus.SENDING, CampaignStatus.PAUSED)


class QueueStatus(enum.StrEnum):
    """``mailer_campaignqueue.status``."""

    PENDING = "pending"  # waiting: deferred (see defer_reason) or paused
    PROCESSING = "processing"  # a send batch is running
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class RecipientStatus(enum.StrEnum):
    """``mailer_campaignrecipient.status``."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class SendLogStatus(enum.StrEnum):
    """``mailer_sendlog.status``."""

    SENT = "sent"
    FAILED = "failed"


class ProofEmailStatus(enum.StrEnum):
    """``mailer_testemail.status``: a test email request and how it ended."""

    REQUESTED = "requested"
    SENT = "sent"
    FAILED = "failed"  # the SMTP server (or the connection) refused it
    REFUSED = "refused"  # over MAILER_THROTTLE_TEST_EMAIL_PER_HOUR: nothing was sent


class SuppressionReason(enum.StrEnum):
    """``mailer_suppression.reason``: why an address is never written to again."""

    UNSUBSCRIBED = "unsubscribed"  # the recipient's own one-click unsubscribe
    HARD_BOUNCE = "hard_bounce"  # the mailbox does not exist (5.1.1, 5.1.2, 5.1.10)
    COMPLAINT = "complaint"  # a spam complaint a feedback loop vouched for (DKIM or sender)
    # A feedback report nobody vouched for: suppressed, not counted as a complaint.
    UNVERIFIED_COMPLAINT = "unverified_complaint"
    MANUAL = "manual"  # an operator's `mailer suppress add`


# A recipient failed because its address is suppressed: ``error`` starts with this.
SUPPRESSED_ERROR_PREFIX = "suppressed: "


class DeferReason(enum.StrEnum):
    """The seed's ``mailer_campaignqueue.defer_reason`` values ('' when there is none)."""

    DAILY_LIMIT = "daily_limit"
    QUOTA_EXHAUSTED = "quota_exhausted"
    RATE_PER_HOUR = "rate_per_hour"
    OUTSIDE_HOURS = "outside_hours"
    TRANSIENT_ERROR = "transient_error"


# Deferred for a reason of their own: they do not compete for the shared hourly window.
SELF_HELD_REASONS = (DeferReason.DAILY_LIMIT, DeferReason.TRANSIENT_ERROR)


class WorkflowState(enum.StrEnum):
    """The campaign workflow's state: the ``MailerStatus`` search attribute and the
    ``progress`` query. Finer than the table's status: ``sending`` there is ``sending`` or
    ``deferred`` here."""

    STARTING = "starting"
    SCHEDULED = "scheduled"  # a scheduled start (``mailer start --at``) not reached yet
    SENDING = "sending"
    DEFERRED = "deferred"
    PAUSED = "paused"
    SENT = "sent"
    CANCELLED = "cancelled"


FINAL_WORKFLOW_STATES = (WorkflowState.SENT, WorkflowState.CANCELLED)


class SendOutcome(enum.StrEnum):
    """How a send batch ended."""

    COMPLETED = "completed"  # sent everything it was allowed to
    RATE_LIMITED = "rate_limited"  # no token left in the hourly window (or the fair share)
    BLOCKED = "blocked"  # quota or daily allowance ran out under the lock
    TRANSIENT = "transient"  # 4xx, timeout, disconnect: retry later
    CONFIGURATION = "configuration"  # auth, sender refused, TLS: pause
    STOPPED = "stopped"  # cancelled (pause/cancel) or worker shutdown mid-batch
    RECIPIENTS_WAITING = "recipients_waiting"  # only recipients waiting for a 4xx retry left
    SERVER_REFUSED = "server_refused"  # a run of 5xx at DATA: the server refuses the campaign
    STALE = "stale"  # the attempt started in another hour than planned: nothing sent, re-decide
    # Every recipient it could take is in a domain group whose per-minute window is full.
    DOMAIN_PACED = "domain_paced"
    # The old (Celery) engine holds its global lock: it may be sending; mailer waits.
    OLD_ENGINE = "old_engine"


class BatchLimit(enum.StrEnum):
    """Why a batch plan holds fewer recipients than the workflow allowed."""

    NONE = ""  # every pending recipient the batch could take fits
    QUOTA_OR_DAY = "quota_or_day"  # the provider's quota or the creator's daily allowance
    RATE_SHARE = "rate_share"  # this campaign's fair share of the hourly window
    RETRY_WAIT = "retry_wait"  # the pending recipients all wait for their 4xx retry time
    NOT_SENDING = "not_sending"  # the campaign is not 'sending' in the database (an operator)
    DOMAIN_PACED = "domain_paced"  # the pending left are in domains paced this minute


class Signal(enum.StrEnum):
    """The campaign workflow's signals (CLI, Web UI, the quota sync)."""

    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    WAKE = "wake"


# The ApplicationError type of a campaign that must not (or cannot) start: non-retryable.
CAMPAIGN_REFUSED = "CampaignRefused"

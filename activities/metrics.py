"""mailer's counters from activities, through the Temporal SDK's metric meter.

The worker's runtime exports them on ``MAILER_METRICS_PORT`` next to the SDK's own
``temporal_*`` metrics (with ``_total`` after counters). Outside an activity (a test calling
the code directly, the CLI) the meter is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity
from temporalio.common import MetricCounter, MetricMeter

EMAILS_SENT = "mailer_emails_sent"
EMAILS_FAILED = "mailer_emails_failed"
EMAILS_DEFERRED = "mailer_emails_deferred"
EMAILS_OUTCOME_UNKNOWN = "mailer_emails_outcome_unknown"
DOMAIN_BACKOFFS = "mailer_domain_backoffs"
RATELIMIT_REDIS_ERRORS = "mailer_ratelimit_redis_errors"


def _meter() -> MetricMeter:
    try:
        return activity.metric_meter()
    except RuntimeError:  # not in an activity
        return MetricMeter.noop


@dataclass(frozen=True)
class BatchCounters:
    """A send batch's counters, made once per batch (not once per message: the batch loop
    is the hot path)."""

    sent: MetricCounter
    failed: MetricCounter
    deferred: MetricCounter
    unknown: MetricCounter
    backoffs: MetricCounter

    @classmethod
    def for_this_activity(cls) -> BatchCounters:
        meter = _meter()
        return cls(
            sent=meter.create_counter(EMAILS_SENT, "Emails accepted by the SMTP server"),
            failed=meter.create_counter(
                EMAILS_FAILED, "Recipients failed for good, by error class"
            ),
            deferred=meter.create_counter(
                EMAILS_DEFERRED,
                "Recipients refused with a 4xx that wait their own retry, by what the reply "
                "was about (recipient, domain, unclear)",
            ),
            unknown=meter.create_counter(
                EMAILS_OUTCOME_UNKNOWN,
                "Messages whose connection failed after the final dot: the server may have "
                "them, and the one retry may deliver a duplicate",
            ),
            backoffs=meter.create_counter(
                DOMAIN_BACKOFFS, "Times a recipient domain's refusals held its recipients back"
            ),
        )

    def email_sent(self) -> None:
        """One message the server accepted and the ledger recorded as sent."""
        self.sent.add(1)

    def email_deferred(self, kind: str) -> None:
        """One recipient waits its own retry after a 4xx about it (``kind``)."""
        self.deferred.add(1, {"kind": kind})

    def outcome_unknown(self) -> None:
        """One message's outcome is unknown (no reply to its final dot)."""
        self.unknown.add(1)

    def domain_backed_off(self) -> None:
        """A domain's recipients in one campaign wait after its refusals."""
        self.backoffs.add(1)

    def emails_failed(self, error_class: str, count: int = 1) -> None:
        """Recipients failed for good (``error_class``: recipient, suppressed…)."""
        if count:
            self.failed.add(count, {"error_class": error_class})


def redis_error() -> None:
    """The rate limiter or a throttle could not reach Redis (and failed open)."""
    _meter().create_counter(
        RATELIMIT_REDIS_ERRORS, "Rate limiter Redis errors (the limiter failed open)"
    ).add(1)

"""mailer's counters from activities, through the Temporal SDK's metric meter.

The worker installs its runtime's meter at start (:func:`install`), labelled with its
namespace and task queue, and every counter is created there **at zero** for each label value
it can take: a series that first appears at 1 is a rise ``increase()`` never sees, so an
alert on the first Redis error would miss it. The runtime exports them on
``MAILER_METRICS_PORT`` next to the SDK's own ``temporal_*`` metrics (with ``_total`` after
counters). Without a worker (a test calling the code directly, the CLI) the counters are
no-ops.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.common import MetricCounter, MetricMeter

from mailer.mail.smtp_replies import ErrorClass
from mailer.mail.temporary_replies import TemporaryKind

EMAILS_SENT = "mailer_emails_sent"
EMAILS_FAILED = "mailer_emails_failed"
EMAILS_DEFERRED = "mailer_emails_deferred"
EMAILS_OUTCOME_UNKNOWN = "mailer_emails_outcome_unknown"
DOMAIN_BACKOFFS = "mailer_domain_backoffs"
RATELIMIT_REDIS_ERRORS = "mailer_ratelimit_redis_errors"

# Recipients failed for good are counted by their error class, or as suppressed.
SUPPRESSED = "suppressed"
FAILED_CLASSES = (*(c.value for c in ErrorClass), SUPPRESSED)


@dataclass(frozen=True)
class BatchCounters:
    """The send path's counters, created once per worker (the batch loop is the hot path)."""

    sent: MetricCounter
    failed: MetricCounter
    deferred: MetricCounter
    unknown: MetricCounter
    backoffs: MetricCounter
    redis_errors: MetricCounter

    @classmethod
    def on(cls, meter: MetricMeter) -> BatchCounters:
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
            redis_errors=meter.create_counter(
                RATELIMIT_REDIS_ERRORS, "Rate limiter Redis errors (the limiter failed open)"
            ),
        )

    def start_at_zero(self) -> None:
        """Every series this worker can export, at 0, before anything happens."""
        for counter in (self.sent, self.unknown, self.backoffs, self.redis_errors):
            counter.add(0)
        for error_class in FAILED_CLASSES:
            self.failed.add(0, {"error_class": error_class})
        for kind in TemporaryKind:
            self.deferred.add(0, {"kind": kind.value})

    @classmethod
    def for_this_activity(cls) -> BatchCounters:
        """The worker's counters (no-ops when none was installed)."""
        return _installed

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


_installed = BatchCounters.on(MetricMeter.noop)


def install(meter: MetricMeter) -> BatchCounters:
    """Count on ``meter`` from now on (the worker's, at start), every series at 0."""
    global _installed
    _installed = BatchCounters.on(meter)
    _installed.start_at_zero()
    return _installed


def redis_error() -> None:
    """The rate limiter or a throttle could not reach Redis (and failed open)."""
    _installed.redis_errors.add(1)

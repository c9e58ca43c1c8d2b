"""The worker's gauges: the ledger's and the schedules' state, exported with its metrics.

Counters come from where things happen (activities, workflows); these are states, read
every ``COLLECT_EVERY`` from the tables and from Temporal by every worker. Reading state
(rather than remembering the last value a workflow set) keeps them right after a worker
restart and identical on every worker, so alert rules can take ``max`` over instances.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.service import RPCError

from mailer.core.settings import Settings
from mailer.doctor.probes import SCHEDULE_IDS, describe_schedule, look_at_database

log = logging.getLogger("mailer.runtime.gauges")

COLLECT_EVERY = 15.0  # seconds; Prometheus scrapes every 15 s too


def _timestamp(moment: datetime | None) -> int:
    """Unix seconds, 0 for never/none (Prometheus' convention: ``time() - x`` is an age
    that keeps growing even when nobody updates ``x``)."""
    return int(moment.timestamp()) if moment is not None else 0


class GaugeCollector:
    def __init__(self, settings: Settings, client: Client, meter: MetricMeter) -> None:
        self.settings = settings
        self.client = client
        gauge = meter.create_gauge
        self.database_up = gauge("mailer_database_up", "1 when the last collection read the DB")
        self.collected = gauge(
            "mailer_gauges_collected_timestamp_seconds",
            "When this worker last read each source (database, temporal) for its gauges",
        )
        self.quota_available = gauge("mailer_quota_available", "smtp.bz emails available")
        self.quota_synced = gauge(
            "mailer_quota_last_sync_timestamp_seconds",
            "When the quota last synced from smtp.bz (0: never)",
        )
        self.queue_depth = gauge("mailer_queue_depth", "Campaign queue rows 'pending'")
        self.crm_requests = gauge(
            "mailer_crm_requests_waiting", "The CRM's writes the dispatcher has not carried out"
        )
        self.crm_request_oldest = gauge(
            "mailer_crm_request_oldest_timestamp_seconds",
            "When the oldest CRM request not carried out was written (0: none)",
        )
        self.processing_oldest = gauge(
            "mailer_processing_oldest_timestamp_seconds",
            "When the oldest queue row 'processing' started (0: none)",
        )
        self.lock_wait_oldest = gauge(
            "mailer_lock_wait_oldest_timestamp_seconds",
            "When the longest-waiting of mailer's statements began waiting for a lock another "
            "session holds (0: none)",
        )
        self.transient_errors = gauge(
            "mailer_campaigns_max_consecutive_transient_errors",
            "The most consecutive transient errors of any active campaign (`mailer list` names it)",
        )
        self.schedule_last_run = gauge(
            "mailer_schedule_last_run_timestamp_seconds",
            "When the schedule last started an action (0: never)",
        )
        self.schedule_interval = gauge("mailer_schedule_interval_seconds", "The schedule's period")
        self.schedule_paused = gauge("mailer_schedule_paused", "1 when the schedule is paused")
        # Settings the alerts and the dashboard compare with: the breaker threshold and the
        # hourly rate window's size.
        gauge("mailer_circuit_breaker_threshold", "MAILER_CIRCUIT_BREAKER_THRESHOLD").set(
            settings.circuit_breaker_threshold
        )
        gauge("mailer_rate_per_hour_limit", "MAILER_RATE_PER_HOUR").set(settings.rate_per_hour)

    async def run(self) -> None:
        """Collect until cancelled; a part that is down is skipped (and said at DEBUG)."""
        while True:
            await self.collect()
            await asyncio.sleep(COLLECT_EVERY)

    async def collect(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        await self._database(now)
        await self._schedules(now)

    async def _database(self, now: datetime) -> None:
        facts = await asyncio.to_thread(look_at_database, self.settings, now)
        self.database_up.set(int(facts.reachable))
        if not facts.reachable:
            log.debug("gauges: database unreachable: %s", facts.error)
            return
        self.collected.set(_timestamp(now), {"source": "database"})
        if facts.quota is not None:
            self.quota_available.set(facts.quota.emails_available)
            self.quota_synced.set(_timestamp(facts.quota.last_synced_at))
        else:
            self.quota_synced.set(0)
        self.queue_depth.set(facts.queue_depth)
        self.crm_requests.set(facts.crm_requests)
        self.crm_request_oldest.set(_timestamp(facts.oldest_crm_request_at))
        started = [s.started_at for s in facts.stuck if s.started_at is not None]
        self.processing_oldest.set(_timestamp(min(started, default=None)))
        self.transient_errors.set(
            max((c.consecutive_transient_errors for c in facts.campaigns), default=0)
        )
        longest = facts.lock_waits[0].waiting if facts.lock_waits else None
        self.lock_wait_oldest.set(_timestamp(now - longest if longest is not None else None))

    async def _schedules(self, now: datetime) -> None:
        described = 0
        for schedule_id in SCHEDULE_IDS:
            try:
                schedule = await describe_schedule(self.client, schedule_id)
            except (RPCError, RuntimeError) as exc:
                log.debug("gauges: cannot describe schedule %s: %s", schedule_id, exc)
                continue
            described += 1
            labels = {"schedule": schedule_id}
            if not schedule.found:
                self.schedule_paused.set(1, labels)  # missing: as bad as paused
                continue
            self.schedule_paused.set(int(schedule.paused), labels)
            if schedule.every is not None:
                self.schedule_interval.set(int(schedule.every.total_seconds()), labels)
            self.schedule_last_run.set(_timestamp(schedule.last_run), labels)
        if described == len(SCHEDULE_IDS):
            self.collected.set(_timestamp(now), {"source": "temporal"})

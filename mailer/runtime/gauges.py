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
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class GaugeCollector:
    def __init__(self, settings: Settings, client: Client, meter: MetricMeter) -> None:
        self.settings = settings
        self.client = client
        gauge = meter.create_gauge
        self.database_up = gauge("mailer_database_up", "1 when the last collection read the DB")
        self.quota_available = gauge("mailer_quota_available", "smtp.bz emails available")
        self.quota_sync_age = gauge(
            "mailer_quota_seconds_since_sync",
            "Seconds since the last good quota sync (since 1970 if never)",
        )
        self.queue_depth = gauge("mailer_queue_depth", "Campaign queue rows 'pending'")
        self.crm_requests = gauge(
            "mailer_crm_requests_waiting", "The CRM's writes the dispatcher has not carried out"
        )
        self.crm_request_age = gauge(
            "mailer_crm_request_oldest_seconds",
            "Age of the oldest CRM request not carried out (0 when none)",
        )
        self.processing_age = gauge(
            "mailer_processing_oldest_seconds",
            "Age of the oldest queue row 'processing' (0 when none)",
        )
        self.transient_errors = gauge(
            "mailer_campaign_consecutive_transient_errors",
            "Consecutive transient errors of each active campaign",
        )
        self.schedule_age = gauge(
            "mailer_schedule_seconds_since_run", "Seconds since the schedule last started"
        )
        self.schedule_interval = gauge("mailer_schedule_interval_seconds", "The schedule's period")
        self.schedule_paused = gauge("mailer_schedule_paused", "1 when the schedule is paused")
        # The alert on consecutive transient errors compares with this (the setting).
        gauge("mailer_circuit_breaker_threshold", "MAILER_CIRCUIT_BREAKER_THRESHOLD").set(
            settings.circuit_breaker_threshold
        )
        self._campaigns_shown: set[str] = set()

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
        if facts.quota is not None:
            self.quota_available.set(facts.quota.emails_available)
            synced = facts.quota.last_synced_at or EPOCH
            self.quota_sync_age.set(int((now - synced).total_seconds()))
        else:
            self.quota_sync_age.set(int((now - EPOCH).total_seconds()))
        self.queue_depth.set(facts.queue_depth)
        self.crm_requests.set(facts.crm_requests)
        oldest_request = facts.oldest_crm_request_at or now
        self.crm_request_age.set(max(0, int((now - oldest_request).total_seconds())))
        oldest = min((s.started_at or now for s in facts.stuck), default=now)
        self.processing_age.set(int((now - oldest).total_seconds()))
        shown = {c.campaign_id for c in facts.campaigns}
        for campaign in facts.campaigns:
            self.transient_errors.set(
                campaign.consecutive_transient_errors, {"campaign_id": campaign.campaign_id}
            )
        # A campaign that finished keeps its series, at 0 (a gauge cannot be withdrawn).
        for campaign_id in self._campaigns_shown - shown:
            self.transient_errors.set(0, {"campaign_id": campaign_id})
        self._campaigns_shown = shown

    async def _schedules(self, now: datetime) -> None:
        for schedule_id in SCHEDULE_IDS:
            try:
                schedule = await describe_schedule(self.client, schedule_id)
            except (RPCError, RuntimeError) as exc:
                log.debug("gauges: cannot describe schedule %s: %s", schedule_id, exc)
                continue
            labels = {"schedule": schedule_id}
            if not schedule.found:
                self.schedule_paused.set(1, labels)  # missing: as bad as paused
                continue
            self.schedule_paused.set(int(schedule.paused), labels)
            if schedule.every is not None:
                self.schedule_interval.set(int(schedule.every.total_seconds()), labels)
            last = schedule.last_run or EPOCH
            self.schedule_age.set(int((now - last).total_seconds()), labels)

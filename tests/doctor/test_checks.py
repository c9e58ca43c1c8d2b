"""The doctor's decisions, on facts made by hand: each alert firing and not firing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailer.doctor.checks import Level, evaluate, exit_code
from mailer.doctor.facts import (
    CampaignFacts,
    DatabaseFacts,
    Drift,
    Facts,
    FailingWorkflowTask,
    LockHolder,
    LockWait,
    Poller,
    QuotaFacts,
    RedisFacts,
    ScheduleFacts,
    StuckProcessing,
    TemporalFacts,
    UnsubscribeFacts,
)
from tests.support.harness import PROJECT_ROOT

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def healthy() -> Facts:
    poller = Poller("1@host", NOW - timedelta(seconds=30))
    return Facts(
        now=NOW,
        timezone="Europe/Moscow",
        rate_per_hour=100,
        circuit_breaker_threshold=10,
        temporal=TemporalFacts(
            address="t:7233",
            namespace="default",
            task_queue="mailer",
            workflow_pollers=[poller],
            activity_pollers=[poller],
            schedules=[
                ScheduleFacts("mailer-quota-sync", every=timedelta(hours=1), last_run=NOW),
                ScheduleFacts("mailer-reconcile", every=timedelta(minutes=5), last_run=NOW),
            ],
        ),
        database=DatabaseFacts(
            address="db:5432/mailer",
            campaigns=[
                CampaignFacts("c1", "n", "sending", "pending", "", None, 9, 1, 2, 0),
            ],
            quota=QuotaFacts(10, 100, NOW - timedelta(hours=5), ""),
        ),
        redis=RedisFacts(address="r:6379/0", rate_key="k", rate_count=3),
        unsubscribe=UnsubscribeFacts(True, "https://mail.example.ru"),
    )


def levels(facts: Facts) -> dict[str, Level]:
    return {check.name: check.level for check in evaluate(facts)}


def test_healthy_is_all_ok() -> None:
    found = evaluate(healthy())
    assert {check.level for check in found} == {Level.OK}
    assert exit_code(found) == 0
    assert {check.name for check in found} == {
        "temporal",
        "postgres",
        "redis",
        "workers",
        "workflow_tasks",
        "schedules",
        "stuck_processing",
        "transient_errors",
        "queue_depth",
        "quota",
        "unsubscribe",
        "old_engine",
        "crm_requests",
        "lock_waits",
        "drift",
    }


def test_redis_down_is_critical_and_says_fail_open() -> None:
    facts = healthy()
    facts.redis.error = "Connection refused"
    [check] = [c for c in evaluate(facts) if c.name == "redis"]
    assert check.level == Level.CRIT
    assert "r:6379/0" in check.summary and "fails open" in check.summary
    assert check.link == "docs/playbook.ru.md#redis-down"


def test_a_poller_not_seen_for_two_minutes_is_a_worker_gone() -> None:
    facts = healthy()
    gone = Poller("1@host", NOW - timedelta(minutes=2, seconds=1))
    facts.temporal.workflow_pollers = facts.temporal.activity_pollers = [gone]
    assert levels(facts)["workers"] == Level.CRIT
    facts.temporal.activity_pollers = [Poller("2@host", NOW - timedelta(seconds=70))]
    assert levels(facts)["workers"] == Level.CRIT  # activities polled, workflows not
    facts.temporal.workflow_pollers = facts.temporal.activity_pollers
    assert levels(facts)["workers"] == Level.OK


@pytest.mark.parametrize(
    ("minutes", "expected"), [(29, Level.OK), (31, Level.CRIT)], ids=["29min", "31min"]
)
def test_processing_over_thirty_minutes(minutes: int, expected: Level) -> None:
    facts = healthy()
    facts.database.stuck = [StuckProcessing("c1", NOW - timedelta(minutes=minutes))]
    assert levels(facts)["stuck_processing"] == expected


def test_breaker_threshold() -> None:
    facts = healthy()
    assert levels(facts)["transient_errors"] == Level.OK  # 9 of 10
    facts.database.campaigns[0].consecutive_transient_errors = 10
    assert levels(facts)["transient_errors"] == Level.CRIT


def test_queue_depth_over_fifty_warns() -> None:
    facts = healthy()
    facts.database.queue_depth = 50
    assert levels(facts)["queue_depth"] == Level.OK
    facts.database.queue_depth = 51
    assert levels(facts)["queue_depth"] == Level.WARN
    assert exit_code(evaluate(facts)) == 1


@pytest.mark.parametrize(
    ("available", "synced_hours_ago", "expected"),
    [(0, 3, Level.WARN), (0, 1, Level.OK), (5, 3, Level.OK), (0, None, Level.WARN)],
)
def test_quota_exhausted_with_an_old_sync_warns(
    available: int, synced_hours_ago: int | None, expected: Level
) -> None:
    facts = healthy()
    synced = NOW - timedelta(hours=synced_hours_ago) if synced_hours_ago is not None else None
    facts.database.quota = QuotaFacts(available, 100, synced, "")
    assert levels(facts)["quota"] == expected


def test_schedules_paused_missing_or_late_warn() -> None:
    facts = healthy()
    reconcile = facts.temporal.schedules[1]
    reconcile.last_run = NOW - timedelta(minutes=10)
    assert levels(facts)["schedules"] == Level.OK  # within two intervals and a minute
    reconcile.last_run = NOW - timedelta(minutes=12)
    assert levels(facts)["schedules"] == Level.WARN
    reconcile.last_run = NOW
    reconcile.paused = True
    [check] = [c for c in evaluate(facts) if c.name == "schedules"]
    assert check.level == Level.WARN and "mailer-reconcile is paused" in check.summary
    facts.temporal.schedules[1] = ScheduleFacts("mailer-reconcile", found=False)
    assert levels(facts)["schedules"] == Level.WARN


def test_failing_workflow_task_is_critical() -> None:
    facts = healthy()
    facts.temporal.failing_workflow_tasks = [FailingWorkflowTask("c1", 4)]
    [check] = [c for c in evaluate(facts) if c.name == "workflow_tasks"]
    assert check.level == Level.CRIT and "attempt 4" in check.summary


def test_a_part_down_hides_the_checks_it_would_feed() -> None:
    facts = healthy()
    facts.temporal.error = "connection refused"
    facts.database.error = "connection refused"
    found = levels(facts)
    assert found == {
        "temporal": Level.CRIT,
        "postgres": Level.CRIT,
        "redis": Level.OK,
        "old_engine": Level.OK,
        "unsubscribe": Level.OK,
    }
    assert exit_code(evaluate(facts)) == 2


def test_unsubscribe_links_off_or_unanswered_warn() -> None:
    facts = healthy()
    facts.unsubscribe = UnsubscribeFacts(False, "http://127.0.0.1:8090")
    [check] = [c for c in evaluate(facts) if c.name == "unsubscribe"]
    assert check.level == Level.WARN and "MAILER_UNSUBSCRIBE_SECRET is not set" in check.summary
    facts.unsubscribe = UnsubscribeFacts(True, "https://mail.example.ru", "Connection refused")
    [check] = [c for c in evaluate(facts) if c.name == "unsubscribe"]
    assert check.level == Level.WARN and "https://mail.example.ru does not answer" in check.summary
    assert exit_code(evaluate(facts)) == 1


def test_every_warning_links_an_existing_playbook_section() -> None:
    facts = healthy()
    facts.redis.error = "down"
    facts.temporal.workflow_pollers = facts.temporal.activity_pollers = []
    facts.temporal.failing_workflow_tasks = [FailingWorkflowTask("c1", 2)]
    facts.temporal.schedules[0].paused = True
    facts.database.stuck = [StuckProcessing("c1", None)]
    facts.database.campaigns[0].consecutive_transient_errors = 10
    facts.database.queue_depth = 99
    facts.database.quota = QuotaFacts(0, 100, None, "")
    facts.unsubscribe = UnsubscribeFacts(False, "x")
    failing = [check for check in evaluate(facts) if check.level != Level.OK]
    facts.database.oldest_crm_request_at = facts.now - timedelta(minutes=5)
    failing += [c for c in evaluate(facts) if c.name == "crm_requests"]
    facts.temporal.drift = [Drift("c1", "sending", "gone", "start")]
    failing += [c for c in evaluate(facts) if c.name == "drift"]
    facts.redis.error, facts.redis.old_engine_lock_ttl = "", 540
    failing += [c for c in evaluate(facts) if c.name == "old_engine"]
    down = healthy()
    down.temporal.error = down.database.error = "down"
    failing += [check for check in evaluate(down) if check.level != Level.OK]
    assert len(failing) == 14  # every check of the doctor but none twice
    playbook = (PROJECT_ROOT / "docs" / "playbook.ru.md").read_text(encoding="utf-8")
    for check in failing:
        assert check.action, check.name
        assert f'<a id="{check.playbook}"></a>' in playbook, check.name


def test_the_old_engines_lock_is_critical_and_says_how_long_it_lasts() -> None:
    facts = healthy()
    facts.redis.old_engine_lock_ttl = 540
    [check] = [c for c in evaluate(facts) if c.name == "old_engine"]
    assert check.level == Level.CRIT and "for 540 s more" in check.summary
    assert "the old engine is running" in check.summary
    facts.redis.old_engine_lock_ttl = None
    [check] = [c for c in evaluate(facts) if c.name == "old_engine"]
    assert check.level == Level.OK


def test_a_crm_request_waiting_over_a_minute_is_critical() -> None:
    facts = healthy()
    facts.database.crm_requests = 3
    facts.database.oldest_crm_request_at = facts.now - timedelta(seconds=50)
    [check] = [c for c in evaluate(facts) if c.name == "crm_requests"]
    assert check.level == Level.OK
    assert check.summary.endswith("no worker listening: carried out at the dispatcher's 10 s turn")
    facts.database.crm_request_listeners = 2
    [check] = [c for c in evaluate(facts) if c.name == "crm_requests"]
    assert check.summary == (
        "3 CRM request(s) waiting; 2 worker connection(s) listening: carried out in about a second"
    )
    facts.database.oldest_crm_request_at = facts.now - timedelta(seconds=95)
    [check] = [c for c in evaluate(facts) if c.name == "crm_requests"]
    assert check.level == Level.CRIT
    assert check.summary.startswith("3 CRM request(s) not carried out, the oldest for 95 s")


def test_a_statement_of_mailer_waiting_half_a_minute_for_a_lock_names_the_holder() -> None:
    facts = healthy()
    psql = LockHolder(4242, "psql", "idle in transaction", timedelta(minutes=14), "10.0.0.5")
    hidden = LockHolder(4343, "", None, None, "")
    facts.database.lock_waits = [LockWait(101, "mailer", timedelta(seconds=29), [psql])]
    [check] = [c for c in evaluate(facts) if c.name == "lock_waits"]
    assert check.level == Level.OK  # a short wait is contention, not an incident
    facts.database.lock_waits = [
        LockWait(101, "mailer", timedelta(seconds=95), [psql, hidden]),
        LockWait(102, "mailer", timedelta(seconds=40), [psql]),
        LockWait(103, "mailer", timedelta(seconds=3), [psql]),
    ]
    [check] = [c for c in evaluate(facts) if c.name == "lock_waits"]
    assert check.level == Level.CRIT
    assert check.summary == (
        "2 statement(s) of mailer wait for a lock, the longest (pid 101, mailer) for 95 s, held "
        "by pid 4242 (psql, idle in transaction, transaction open 14 min, from 10.0.0.5); "
        "pid 4343 (no application name): its batch stands still until the holder commits or "
        "rolls back"
    )
    assert "WHERE pid IN (4242, 4343)" in check.action
    assert check.link == "docs/playbook.ru.md#lock-wait"


def test_a_campaign_whose_table_and_workflow_disagree_is_named() -> None:
    facts = healthy()
    facts.temporal.drift = [Drift("c7", "sending", "paused", "resume")]
    [check] = [c for c in evaluate(facts) if c.name == "drift"]
    assert check.level == Level.WARN
    assert "c7: table sending, workflow paused (wants resume)" in check.summary

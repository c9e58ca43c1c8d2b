"""The alert rules (deploy/prometheus/alerts.yml): valid for Prometheus, each unit-tested by
promtool firing and not firing, each pointing at a section of the playbook."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.support.harness import PROJECT_ROOT

RULES_DIR = PROJECT_ROOT / "deploy" / "prometheus"
PLAYBOOK = PROJECT_ROOT / "docs" / "playbook.ru.md"
SEED_ALERTS = {
    "MailerRateLimiterRedisErrors",
    "MailerCampaignStuckProcessing",
    "MailerConsecutiveTransientErrors",
    "MailerQueueDepth",
    "MailerQuotaExhaustedNotSyncing",
    "MailerScheduledWorkNotRunning",
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        # CI installs Debian's `prometheus` (.ci/run): there the test must run, not skip.
        if os.environ.get("CI"):
            pytest.fail("promtool not found: install the Debian package `prometheus`")
        pytest.skip("promtool not installed (Debian package `prometheus`)")
    return found


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((RULES_DIR / "alerts.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    tool = promtool()
    checked = subprocess.run(
        [tool, "check", "rules", "alerts.yml"], cwd=RULES_DIR, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [tool, "test", "rules", "alerts.test.yml"], cwd=RULES_DIR, capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load((RULES_DIR / "alerts.test.yml").read_text())["tests"]
    cases: dict[str, set[bool]] = {}
    for group in tests:
        for case in group["alert_rule_test"]:
            cases.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
    names = {rule["alert"] for rule in rules()}
    assert names >= SEED_ALERTS
    assert {name: cases.get(name) for name in names} == {name: {True, False} for name in names}


def test_every_alert_says_what_to_do_and_links_an_existing_playbook_section() -> None:
    anchors = set(re.findall(r'<a id="([\w-]+)"></a>', PLAYBOOK.read_text(encoding="utf-8")))
    for rule in rules():
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["action"], rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}
        path, _, anchor = annotations["playbook"].partition("#")
        assert (PROJECT_ROOT / path) == PLAYBOOK and anchor in anchors, rule["alert"]


def test_severities_follow_the_seed_playbook() -> None:
    severity = {rule["alert"]: rule["labels"]["severity"] for rule in rules()}
    assert {name for name in SEED_ALERTS if severity[name] == "critical"} == {
        "MailerRateLimiterRedisErrors",
        "MailerCampaignStuckProcessing",
        "MailerConsecutiveTransientErrors",
    }


def test_no_rule_depends_on_the_scrape_jobs_name() -> None:
    """Kubernetes' scraping names jobs its own way: a rule bound to `job="mailer-worker"`
    would never fire there."""
    for rule in rules():
        assert "job=" not in rule["expr"].replace(" ", ""), rule["alert"]

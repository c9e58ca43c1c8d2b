"""The Grafana dashboard (deploy/grafana/mailer.json) against a real worker: every series a
panel queries is one the worker exports, and every query runs on a real Prometheus (Debian's
`prometheus`) scraping that worker."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

from mailer.stack.processes import terminate
from mailer.stack.servers import free_port
from tests.runtime.test_metrics import metrics_worker, samples
from tests.support.harness import PROJECT_ROOT, Harness, wait_for

GRAFANA = PROJECT_ROOT / "deploy" / "grafana"
SERIES = re.compile(r"\b(?:mailer|temporal)_[a-z0-9_]+\b")
# The SDK creates these counters on their first event (a failing workflow task): a healthy
# worker does not export them yet, and the panel says `or vector(0)`.
CREATED_ON_FIRST_EVENT = {"temporal_workflow_task_execution_failed_total"}


def queries() -> list[tuple[str, str]]:
    """Every (panel title, PromQL) of the dashboard."""
    dashboard = json.loads((GRAFANA / "mailer.json").read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_the_dashboard_is_provisioned_with_the_data_source_its_panels_name() -> None:
    dashboard = json.loads((GRAFANA / "mailer.json").read_text())
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    uid = sources["datasources"][0]["uid"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 12
    assert {p["datasource"]["uid"] for p in panels} == {uid}
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert "./deploy/grafana/mailer.json:/var/lib/grafana/dashboards/mailer.json:ro" in mounts
    assert compose["services"]["grafana"]["ports"] == ["127.0.0.1:3000:3000"]


async def test_every_panel_queries_series_a_real_worker_exports(
    dev: Harness, tmp_path: Path
) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        # CI installs Debian's `prometheus` (.ci/run): there the test must run, not skip.
        if os.environ.get("CI"):
            pytest.fail("prometheus not found: install the Debian package `prometheus`")
        pytest.skip("prometheus not installed (Debian package `prometheus`)")
    campaign = dev.ready_campaign(5)
    port = free_port()
    async with metrics_worker(dev, tmp_path, port) as url, httpx.AsyncClient() as http:
        await dev.start(campaign)
        await wait_for(
            lambda: dev.queue_row(campaign).get("status") == "completed",
            timeout=60,
            what="the campaign sent",
        )
        exported = {name for name, _ in samples((await http.get(url)).text)}
        for title, expr in queries():
            for series in SERIES.findall(expr):
                assert series in exported | CREATED_ON_FIRST_EVENT, f"{title}: {series}"

        with _prometheus(prometheus, port, tmp_path) as api:

            async def scraped() -> bool:
                try:
                    reply = await http.get(
                        f"{api}/api/v1/query", params={"query": "mailer_worker_ready"}
                    )
                except httpx.HTTPError:
                    return False  # not listening yet
                return reply.status_code == 200 and bool(reply.json()["data"]["result"])

            await wait_for(scraped, timeout=30, interval=0.5, what="Prometheus scraping")
            for title, expr in queries():
                query = expr.replace("$__rate_interval", "1m")
                reply = await http.get(f"{api}/api/v1/query", params={"query": query})
                assert reply.json()["status"] == "success", f"{title}: {reply.text}"
            sent = await http.get(
                f"{api}/api/v1/query", params={"query": "sum(mailer_emails_sent_total)"}
            )
            assert float(sent.json()["data"]["result"][0]["value"][1]) == 5


@contextmanager
def _prometheus(binary: str, worker_port: int, tmp_path: Path) -> Iterator[str]:
    """Debian's Prometheus scraping the worker every second (under a job name of its own),
    until the block ends; yields its URL."""
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "any-name",
                        "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}],
                    }
                ],
            }
        )
    )
    command = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with (tmp_path / "prometheus.log").open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        terminate(process.pid)
        process.wait(10)

"""docker-compose.yml, read as Docker would (there is no Docker engine here to run it):
pinned images, secrets from an uncommitted env file, the worker's settings, healthcheck and
metrics, and Prometheus loading the alert rules."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailer.core.settings import Settings
from tests.support.harness import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
PROMETHEUS_DIR = PROJECT_ROOT / "deploy" / "prometheus"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return services


def env_file_keys(path: str) -> set[str]:
    example = PROJECT_ROOT / f"{path}.example"
    assert example.exists(), f"{path}.example is not committed"
    return {
        line.split("=", 1)[0]
        for line in example.read_text().splitlines()
        if line and not line.startswith("#")
    }


def environment(service: dict[str, Any]) -> set[str]:
    """Every variable the service's container gets (environment and env files)."""
    keys = set(service.get("environment") or {})
    files = service.get("env_file") or []
    for path in [files] if isinstance(files, str) else files:
        keys |= env_file_keys(path)
    return keys


def test_every_image_is_pinned_to_a_version() -> None:
    for name, service in services().items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {image} is not pinned"
        assert re.search(r"\d", tag), f"{name}: {image} has no version in its tag"
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+\.\d+-slim-\w+$", dockerfile, re.MULTILINE)


def test_secrets_come_from_env_files_that_are_not_committed() -> None:
    ignored = (PROJECT_ROOT / ".gitignore").read_text().splitlines()
    assert "deploy/*.env" in ignored
    text = COMPOSE.read_text()
    assert "PASSWORD:" not in text and ":-mailer}" not in text  # no password defaults inline
    for service in services().values():
        files = service.get("env_file") or []
        for path in [files] if isinstance(files, str) else files:
            assert path.startswith("deploy/") and path.endswith(".env")
            env_file_keys(path)


def test_the_worker_gets_every_setting_that_must_differ_from_the_embedded_default() -> None:
    worker = services()["worker"]
    given = environment(worker)
    # A setting without a default, or whose default points at the embedded stack on
    # 127.0.0.1, must be given to a container.
    required = {
        f"MAILER_{name.upper()}"
        for name, field in Settings.model_fields.items()
        if field.is_required() or "127.0.0.1" in str(field.default)
    }
    assert required <= given, required - given
    assert given >= {"MAILER_METRICS_PORT", "MAILER_METRICS_HOST"}
    for name in ("migrate", "cli"):
        assert {"MAILER_DATABASE_URL", "MAILER_REDIS_URL"} <= environment(services()[name])


def test_the_worker_scales_runs_as_non_root_and_has_a_healthcheck() -> None:
    worker = services()["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["user"].split(":")[0] != "0"
    assert "USER mailer" in (PROJECT_ROOT / "Dockerfile").read_text()
    assert worker["healthcheck"]["test"] == ["CMD", "python", "-m", "mailer.runtime.probe"]
    assert worker["stop_grace_period"]


def test_prometheus_loads_the_rules_and_scrapes_the_workers_metrics_port() -> None:
    prometheus = services()["prometheus"]
    mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in prometheus["volumes"]}
    assert mounts["./deploy/prometheus/alerts.yml"] == "/etc/prometheus/alerts.yml"
    assert mounts["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]  # beside the config, in both places
    [job] = config["scrape_configs"]
    assert job["job_name"] == "mailer-worker"  # what the MailerNoWorker alert reads
    [discovery] = job["dns_sd_configs"]
    port = int(compose()["x-mailer-env"]["MAILER_METRICS_PORT"])
    assert discovery == {**discovery, "names": ["worker"], "port": port}


def test_promtool_accepts_the_prometheus_config() -> None:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool not installed (Debian package `prometheus`)")
    result = subprocess.run(
        [tool, "check", "config", "prometheus.yml"],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_unsubscribe_service_runs_with_its_secret_and_public_url() -> None:
    web = services()["web"]
    assert web["command"] == ["mailer", "web"]
    given = environment(web)
    assert {
        "MAILER_UNSUBSCRIBE_SECRET",
        "MAILER_UNSUBSCRIBE_BASE_URL",
        "MAILER_DATABASE_URL",
    } <= given
    assert "MAILER_UNSUBSCRIBE_SECRET" in environment(services()["worker"])  # signs the links
    assert compose()["x-mailer-env"]["MAILER_UNSUBSCRIBE_BASE_URL"].startswith("https://")
    assert "/healthz" in " ".join(web["healthcheck"]["test"])


def test_temporal_runs_on_supported_images_with_the_schema_step_first() -> None:
    found = services()
    images = {name: service["image"] for name, service in found.items()}
    assert not any("auto-setup" in image for image in images.values())  # deprecated
    assert images["temporal"].startswith("temporalio/server:1.31.")
    assert (
        images["temporal-schema"]
        == images["temporal-namespace"]
        == ("temporalio/admin-tools:" + images["temporal"].split(":")[1])
    )  # the schema tool matches the server's version
    assert images["temporal-ui"].startswith("temporalio/ui:2.49.")
    assert found["temporal"]["depends_on"]["temporal-schema"] == {
        "condition": "service_completed_successfully"
    }
    assert "update-schema" in found["temporal-schema"]["command"][0]
    assert "namespace create" in found["temporal-namespace"]["command"][0]
    for name in ("worker", "temporal-ui"):
        assert found[name]["depends_on"]["temporal-namespace"] == {
            "condition": "service_completed_successfully"
        }
    mount = "./deploy/temporal/dynamicconfig:/etc/temporal/config/dynamicconfig:ro"
    assert mount in found["temporal"]["volumes"]
    config = found["temporal"]["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    assert (PROJECT_ROOT / "deploy/temporal/dynamicconfig" / Path(config).name).exists()
    assert {"POSTGRES_PASSWORD", "POSTGRES_PWD", "SQL_PASSWORD"} <= env_file_keys(
        "deploy/temporal.env"
    )


def test_the_kubernetes_worker_probes_its_health_endpoint_and_reads_secrets() -> None:
    documents = list(yaml.safe_load_all((PROJECT_ROOT / "deploy/k8s/worker.yaml").read_text()))
    config = next(d for d in documents if d["kind"] == "ConfigMap")["data"]
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["health"] == int(config["MAILER_HEALTH_PORT"])
    assert ports["metrics"] == int(config["MAILER_METRICS_PORT"])
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert {"secretRef": {"name": "mailer-secrets"}} in container["envFrom"]
    # No secret in the ConfigMap: connection URLs and keys come from the Secret.
    assert not {"MAILER_DATABASE_URL", "MAILER_REDIS_URL", "MAILER_UNSUBSCRIBE_SECRET"} & set(
        config
    )
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] > 30  # the worker's own graceful 30 s
    assert deployment["spec"]["replicas"] >= 2
    assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]


def test_the_web_service_receives_mail_on_a_port_a_non_root_user_can_bind() -> None:
    web = services()["web"]
    env = web["environment"]
    assert env["MAILER_WEB_HOST"] == "0.0.0.0"  # the shared settings, merged in
    inbound = int(env["MAILER_INBOUND_PORT"])
    assert inbound >= 1024 and web["user"].split(":")[0] != "0"
    assert f"25:{inbound}" in web["ports"]


def test_only_the_mail_receiver_listens_beyond_loopback() -> None:
    """Temporal's frontend, the Web UI, Prometheus, Mailpit and web's HTTP are loopback only:
    none of them has auth, and anyone reaching the frontend could terminate workflows."""
    published = {name: service.get("ports", []) for name, service in compose()["services"].items()}
    for name, ports in published.items():
        for port in ports:
            if name == "web" and str(port).startswith("25:"):
                continue  # mail servers must reach the receiver
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_each_service_reads_only_its_own_secrets() -> None:
    postgres = compose()["services"]["postgres"]
    assert postgres["env_file"] == "deploy/postgres.env"
    example = (PROJECT_ROOT / "deploy/postgres.env.example").read_text()
    assert "MAILER_UNSUBSCRIBE_SECRET" not in example and "POSTGRES_PASSWORD=" in example


def test_the_dynamic_config_holds_no_dev_only_keys_and_shards_are_chosen() -> None:
    config = (PROJECT_ROOT / "deploy/temporal/dynamicconfig/mailer.yaml").read_text()
    assert "forceSearchAttributesCacheRefreshOnRead" not in config.split("stay out")[1]
    warn = yaml.safe_load(config)["limit.historyCount.warn"][0]["value"]
    assert 5000 < warn < 10240  # above the continue-as-new point, below the default
    temporal = compose()["services"]["temporal"]["environment"]
    assert int(temporal["NUM_HISTORY_SHARDS"]) >= 512

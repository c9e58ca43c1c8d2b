"""deploy/k8s, read as a cluster would (there is no cluster here): valid against Kubernetes'
own schemas, Pod Security "restricted", probes that fit the endpoints they ask, disruption
budgets, and PostgreSQL connections that fit the server's default limit."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import yaml

from mailer.cli.web import WEB_DATABASE_CONNECTIONS
from mailer.runtime import request_listener
from mailer.runtime.worker import CONNECTIONS_PER_ACTIVITY
from tests.support.harness import PROJECT_ROOT

K8S = PROJECT_ROOT / "deploy" / "k8s"
# PostgreSQL's default max_connections (100) less superuser_reserved_connections (3).
POSTGRES_CONNECTIONS = 97


def documents() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            found[(document["kind"], document["metadata"]["name"])] = document
    return found


def test_the_manifests_pass_kubernetes_schemas_strictly() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", *map(str, K8S.glob("*.yaml"))],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_pod_meets_pod_security_restricted() -> None:
    for (kind, name), document in documents().items():
        if kind not in ("Deployment", "Job"):
            continue
        pod = document["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert context["readOnlyRootFilesystem"] is True, name
            assert container["resources"]["limits"], name


def test_probes_fit_the_health_endpoint() -> None:
    worker = documents()[("Deployment", "mailer-worker")]["spec"]["template"]["spec"]
    [container] = worker["containers"]
    # /readyz asks Temporal twice with 3 s deadlines; the default 1 s would fail it.
    assert container["readinessProbe"]["timeoutSeconds"] >= 7
    # /livez answers while the worker waits for Temporal: the startup probe asks it.
    assert container["startupProbe"]["httpGet"]["path"] == "/livez"


def test_workers_and_web_survive_a_node_drain() -> None:
    found = documents()
    for name in ("mailer-worker", "mailer-web"):
        deployment = found[("Deployment", name)]
        assert deployment["spec"]["replicas"] >= 2, name
        assert found[("PodDisruptionBudget", name)]["spec"]["maxUnavailable"] == 1, name
        spread = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
        assert spread["preferredDuringSchedulingIgnoredDuringExecution"], name
    monitor = found[("PodMonitor", "mailer-worker")]
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    migrate = found[("Job", "mailer-migrate")]["spec"]["template"]["spec"]["containers"][0]
    assert migrate["command"] == ["mailer", "db", "upgrade"]
    service = found[("Service", "mailer-web")]
    assert {p["port"] for p in service["spec"]["ports"]} == {80, 25}


def test_database_connections_fit_postgresqls_default_limit_even_during_a_rollout() -> None:
    found = documents()
    config = found[("ConfigMap", "mailer-config")]["data"]
    activities = int(config["MAILER_MAX_CONCURRENT_ACTIVITIES"])

    def pods_at_most(name: str) -> int:
        spec = found[("Deployment", name)]["spec"]
        return int(spec["replicas"]) + int(spec["strategy"]["rollingUpdate"]["maxSurge"])

    per_worker = activities * CONNECTIONS_PER_ACTIVITY + request_listener.CONNECTIONS
    workers = pods_at_most("mailer-worker") * per_worker
    web = pods_at_most("mailer-web") * WEB_DATABASE_CONNECTIONS
    migrate = 2
    assert workers + web + migrate <= POSTGRES_CONNECTIONS


# Measured by bench/scale.py (docs/benchmarks.md): an idle worker's RSS, and what each
# campaign cached between its turns adds (unsandboxed, as production runs workflows).
IDLE_WORKER_MIB = 135
CACHED_CAMPAIGN_MIB = 0.11


def mebibytes(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


def test_a_worker_full_of_cached_campaigns_fits_its_memory_limit() -> None:
    """The workflow cache fills up to MAILER_MAX_CACHED_WORKFLOWS before it evicts: a worker
    holding that many sleeping campaigns must not be killed for its memory."""
    found = documents()
    cached = int(found[("ConfigMap", "mailer-config")]["data"]["MAILER_MAX_CACHED_WORKFLOWS"])
    pod = found[("Deployment", "mailer-worker")]["spec"]["template"]["spec"]
    limit = mebibytes(pod["containers"][0]["resources"]["limits"]["memory"])
    assert IDLE_WORKER_MIB + cached * CACHED_CAMPAIGN_MIB <= 0.8 * limit


def test_the_cloud_example_uses_the_api_key_endpoint() -> None:
    """API-key auth connects to the regional endpoint; NAMESPACE.ACCOUNT.tmprl.cloud is the
    mTLS one."""
    config = documents()[("ConfigMap", "mailer-config")]["data"]
    assert config["MAILER_TEMPORAL_ADDRESS"].endswith(".api.temporal.io:7233")

"""``python -m mailer.runtime.probe``: exit 0 when this host's worker is up and polling.

Asks the worker's ``/readyz`` (``MAILER_HEALTH_PORT``,
:mod:`mailer.runtime.health_endpoint`); without one, reads its metrics
(``MAILER_METRICS_PORT``) and wants the SDK's ``temporal_num_pollers`` above zero for
workflow and activity tasks. A worker that cannot reach Temporal is not healthy. One line on
stdout either way, for ``docker inspect`` and the compose healthcheck.
"""

from __future__ import annotations

import re
import sys

import httpx

from mailer.core.errors import ConfigError
from mailer.core.settings import get_settings

_POLLERS = re.compile(
    r'^temporal_num_pollers\{[^}]*poller_type="(?P<type>[a-z_]+)"[^}]*\} (?P<n>\S+)$'
)


def pollers(metrics_text: str) -> dict[str, float]:
    """``temporal_num_pollers`` summed by kind: ``workflow`` (normal and sticky), ``activity``."""
    found: dict[str, float] = {}
    for line in metrics_text.splitlines():
        match = _POLLERS.match(line)
        if match:
            kind = "workflow" if "workflow" in match["type"] else match["type"]
            kind = "activity" if "activity" in kind else kind
            found[kind] = found.get(kind, 0.0) + float(match["n"])
    return found


def _ready(url: str) -> int:
    """The worker's own readiness (mailer.runtime.health_endpoint)."""
    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError as exc:
        print(f"unhealthy: cannot read {url} ({exc})")
        return 1
    reason = response.json().get("reason", "") if response.content else ""
    print(f"{'healthy' if response.status_code == 200 else 'unhealthy'}: {reason}")
    return 0 if response.status_code == 200 else 1


def main() -> int:
    try:
        settings = get_settings()
    except ConfigError as exc:
        print(f"unhealthy: {exc}")
        return 1
    if settings.health_port:
        return _ready(f"http://127.0.0.1:{settings.health_port}/readyz")
    if not settings.metrics_port:
        print("unhealthy: set MAILER_HEALTH_PORT (or MAILER_METRICS_PORT) for the health check")
        return 1
    url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    try:
        response = httpx.get(url, timeout=3)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        print(f"unhealthy: cannot read {url} ({exc})")
        return 1
    found = pollers(response.text)
    missing = [kind for kind in ("workflow", "activity") if found.get(kind, 0) <= 0]
    if missing:
        print(f"unhealthy: no {' or '.join(missing)} pollers: not polling Temporal yet")
        return 1
    print(f"healthy: polling task queue {settings.task_queue!r} ({found})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The worker's health endpoint: live at once, ready once Temporal sees it polling, gone
after SIGTERM — what compose's healthcheck and the Kubernetes probes ask."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx

from bench.faults.rig import WorkerProcess
from mailer.stack.servers import free_port
from tests.support.harness import Harness, healthcheck, process_env, wait_for


async def test_ready_once_polling_and_gone_after_shutdown(dev: Harness, tmp_path: Path) -> None:
    port = free_port()
    env = process_env(dev, MAILER_HEALTH_PORT=str(port))
    worker = WorkerProcess(env, tmp_path / "worker.log")
    base = f"http://127.0.0.1:{port}"
    readiness: dict[str, object] = {}

    async def ready() -> bool:
        assert worker.process.poll() is None, worker.log.read_text()  # died: say why
        try:
            response = await asyncio.to_thread(httpx.get, f"{base}/readyz", timeout=5)
        except httpx.HTTPError:
            return False
        readiness.update(response.json())
        return response.status_code == 200

    try:
        # Bounded: the worker starts, registers its search attributes, then polls.
        await wait_for(ready, timeout=60, interval=0.2, what="/readyz to say ready")
        assert readiness["ready"] is True, readiness
        identity = str(readiness["reason"]).split(" ")[0]
        assert identity.endswith(f"@{socket.gethostname()}")  # names the host
        assert f"as {identity}" in worker.log.read_text()
        assert "on uvloop's event loop" in worker.log.read_text()  # the default loop
        assert (await asyncio.to_thread(httpx.get, f"{base}/livez")).json() == {"alive": True}
        assert (await asyncio.to_thread(httpx.get, f"{base}/nope")).status_code == 404
        check = await healthcheck(env)
        assert check.returncode == 0 and check.stdout.startswith("healthy: "), check.stdout
    finally:
        worker.stop()
    await wait_for(lambda: worker.process.poll() is not None, timeout=30)
    after = await healthcheck(env)
    assert after.returncode == 1 and after.stdout.startswith("unhealthy: cannot read")

"""The worker's health endpoint: live at once, ready once Temporal sees it polling, gone
after SIGTERM — what compose's healthcheck and the Kubernetes probes ask."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.chaos.rig import WorkerProcess
from tests.harness import Harness, process_env, wait_for
from tests.servers import free_port


async def test_ready_once_polling_and_gone_after_shutdown(dev: Harness, tmp_path: Path) -> None:
    port = free_port()
    env = process_env(dev, MAILER_HEALTH_PORT=str(port))
    worker = WorkerProcess(env, tmp_path / "worker.log")
    base = f"http://127.0.0.1:{port}"
    readiness: dict[str, object] = {}

    async def ready() -> bool:
        try:
            response = await asyncio.to_thread(httpx.get, f"{base}/readyz", timeout=5)
        except httpx.HTTPError:
            return False
        readiness.update(response.json())
        return response.status_code == 200

    try:
        for _ in range(300):  # bounded: the worker starts, registers, then polls
            if await ready():
                break
            assert worker.process.poll() is None, worker.log.read_text()
            await asyncio.sleep(0.2)
        assert readiness["ready"] is True, readiness
        identity = str(readiness["reason"]).split(" ")[0]
        assert identity.endswith(f"@{socket.gethostname()}")  # names the host
        assert f"as {identity}" in worker.log.read_text()
        assert (await asyncio.to_thread(httpx.get, f"{base}/livez")).json() == {"alive": True}
        assert (await asyncio.to_thread(httpx.get, f"{base}/nope")).status_code == 404
        check = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "mailer.healthcheck"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert check.returncode == 0 and check.stdout.startswith("healthy: "), check.stdout
    finally:
        worker.stop()
    await wait_for(lambda: worker.process.poll() is not None, timeout=30)
    after = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "mailer.healthcheck"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert after.returncode == 1 and after.stdout.startswith("unhealthy: cannot read")

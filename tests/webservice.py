"""``mailer web`` started as operators start it, on a free port, against a test database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mailer.stack.processes import terminate
from tests.harness import PROJECT_ROOT
from tests.servers import free_port

SECRET = "test-unsubscribe-secret"


@dataclass
class WebService:
    base_url: str
    database_url: str
    log: Path


@pytest.fixture
def web(database_url: str, tmp_path: Path) -> Iterator[WebService]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "MAILER_ENV_FILES": "",
        "MAILER_DATABASE_URL": database_url,
        "MAILER_UNSUBSCRIBE_SECRET": SECRET,
        "MAILER_UNSUBSCRIBE_BASE_URL": base_url,
    }
    log = tmp_path / "web.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mailer.cli", "web", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, log.read_text()
            subprocess.run(["sleep", "0.05"], check=True)  # a bounded poll, not a fixed wait
        else:
            raise AssertionError(f"mailer web did not answer: {log.read_text()}")
        yield WebService(base_url, database_url, log)
    finally:
        terminate(process.pid)
        process.wait(10)

"""``mailer web`` started as operators start it, on a free port, against a test database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailer.stack.processes import terminate
from mailer.stack.servers import free_port
from tests.support.harness import PROJECT_ROOT

SECRET = "test-unsubscribe-secret"


@dataclass
class WebService:
    base_url: str
    database_url: str
    log: Path
    inbound_port: int  # its SMTP receiver (MAILER_INBOUND_PORT)


@contextmanager
def running_web(
    database_url: str, log: Path, extra_env: dict[str, str] | None = None
) -> Iterator[WebService]:
    """``mailer web`` with its SMTP receiver, both on free ports, until the block ends
    (``extra_env``: more ``MAILER_*`` settings)."""
    port, inbound_port = free_port(), free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "MAILER_ENV_FILES": "",
        "MAILER_DATABASE_URL": database_url,
        "MAILER_UNSUBSCRIBE_SECRET": SECRET,
        "MAILER_UNSUBSCRIBE_BASE_URL": base_url,
        "MAILER_INBOUND_PORT": str(inbound_port),
        **(extra_env or {}),
    }
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
            if _listening(port) and _listening(inbound_port):
                break
            assert process.poll() is None, log.read_text()
            subprocess.run(["sleep", "0.05"], check=True)  # a bounded poll, not a fixed wait
        else:
            raise AssertionError(f"mailer web did not listen: {log.read_text()}")
        yield WebService(base_url, database_url, log, inbound_port)
    finally:
        terminate(process.pid)
        process.wait(10)


def web_refusing_to_start(
    database_url: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``mailer web`` run once with ``env`` (more ``MAILER_*`` settings) where it should stop
    at start: its exit code and one-line error."""
    return subprocess.run(
        [sys.executable, "-m", "mailer.cli", "web", "--port", str(free_port())],
        cwd=PROJECT_ROOT,
        env={
            **os.environ,
            "MAILER_ENV_FILES": "",
            "MAILER_DATABASE_URL": database_url,
            "MAILER_UNSUBSCRIBE_SECRET": SECRET,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def web(database_url: str, tmp_path: Path) -> Iterator[WebService]:
    with running_web(database_url, tmp_path / "web.log") as service:
        yield service

"""A part going down is one ERROR line, back up one INFO line, quiet in between."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from mailer.core.reachability import DATABASE_UNREACHABLE, QuietWhileUnreachable, Reachability
from mailer.stack.servers import free_port
from tests.support.harness import PROJECT_ROOT, wait_for


def test_one_line_when_it_goes_down_and_one_when_it_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reachability = Reachability()
    with caplog.at_level(logging.INFO, logger="mailer.core.reachability"):
        for _ in range(3):
            reachability.down("PostgreSQL", "db:5432", "connection refused")
        reachability.up("PostgreSQL")
        reachability.up("PostgreSQL")
        reachability.down("PostgreSQL", "db:5432", "connection refused")
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("ERROR", "PostgreSQL at db:5432 is unreachable: connection refused (retrying quietly)"),
        ("INFO", "PostgreSQL at db:5432 is reachable again"),
        ("ERROR", "PostgreSQL at db:5432 is unreachable: connection refused (retrying quietly)"),
    ]


def test_the_sdks_per_retry_lines_for_an_unreachable_database_are_dropped() -> None:
    quiet = QuietWhileUnreachable()

    def record(error: BaseException) -> logging.LogRecord:
        return logging.LogRecord(
            "temporalio.activity",
            logging.WARNING,
            "",
            0,
            "Completing activity as failed",
            (),
            (type(error), error, None),
        )

    assert not quiet.filter(record(ApplicationError("down", type=DATABASE_UNREACHABLE)))
    assert quiet.filter(record(ApplicationError("a bug", type="KeyError")))


async def test_a_worker_without_temporal_says_so_once_and_waits(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "worker.log"
    env = dict(
        os.environ,
        MAILER_ENV_FILES="",
        MAILER_TEMPORAL_ADDRESS=f"127.0.0.1:{port}",
        MAILER_LOG_LEVEL="DEBUG",
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        await wait_for(
            lambda: log.read_text().count("still unreachable; retrying") >= 3,
            timeout=30,
            what="three tries",
        )
        assert worker.poll() is None  # still waiting for Temporal, not crashed
    finally:
        worker.terminate()
        worker.wait(10)
    text = log.read_text()
    assert f"ERROR mailer.core.reachability: Temporal at 127.0.0.1:{port} is unreachable" in text
    assert text.count("is unreachable") == 1 and "Traceback" not in text

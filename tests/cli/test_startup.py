"""Every `mailer` command starts without loading what only one command needs: the
simulation's runner (the worker, Temporal's test server) and the web server with its SMTP
receiver. An operator's `mailer list` at night should not wait on them."""

from __future__ import annotations

import json
import subprocess
import sys

# Loaded by `mailer simulate` and `mailer web` alone, when they run.
ONE_COMMANDS_OWN = [
    "mailer.simulate.runner",
    "mailer.runtime.worker",
    "temporalio.testing",
    "uvicorn",
    "mailer.inbound.receiver",
    "mailer.web.app",
]


def test_the_cli_loads_no_single_commands_machinery() -> None:
    probe = (
        "import json, sys, mailer.cli;"
        f"print(json.dumps([m for m in {ONE_COMMANDS_OWN!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout) == []

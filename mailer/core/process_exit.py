"""Ending a process with an honest exit code (the CLI, the worker and the demo use it)."""

from __future__ import annotations

import os
import sys


def exit_process(code: int) -> None:
    """Flush and end the process without interpreter finalization.

    The Temporal client's native runtime can crash the interpreter while it finalizes
    ("PyGILState_Release … finalizing") after a command is done; every file and transaction
    is closed by then, so skipping finalization loses nothing and keeps exit codes honest.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

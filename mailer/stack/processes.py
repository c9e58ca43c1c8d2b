"""Background processes owned by the stack: started detached, tracked by pid file.

A pid file records the pid and the process's start time, so ``down`` stops exactly what
``up`` started, never an unrelated process that happens to reuse the pid.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from mailer.core.errors import StackError


@dataclass(frozen=True)
class Tracked:
    name: str
    pid: int
    started: float


def pid_file(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid"


def record(run_dir: Path, name: str, pid: int) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    started = psutil.Process(pid).create_time()
    pid_file(run_dir, name).write_text(f"{pid}\n{started}\n")


def tracked(run_dir: Path, name: str) -> Tracked | None:
    """The recorded process if it is still the one we started and still running."""
    path = pid_file(run_dir, name)
    try:
        pid_text, started_text = path.read_text().split()[:2]
        pid, started = int(pid_text), float(started_text)
    except (OSError, ValueError):
        return None
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - started) > 1 or process.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return Tracked(name=name, pid=pid, started=started)


def forget(run_dir: Path, name: str) -> None:
    pid_file(run_dir, name).unlink(missing_ok=True)


def spawn(command: list[str], log_file: Path, *, env: dict[str, str] | None = None) -> int:
    """Start ``command`` in its own session, output appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    return process.pid


def terminate(pid: int, *, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it is still alive after ``timeout`` seconds."""
    try:
        process = psutil.Process(pid)
        os.kill(pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except psutil.TimeoutExpired:
        os.kill(pid, signal.SIGKILL)
    except (psutil.NoSuchProcess, ProcessLookupError):
        pass


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
    log_file: Path | None = None,
) -> None:
    """Poll ``ready`` until true; fail early if ``alive`` turns false, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if not alive():
            raise StackError(f"{what} exited during start-up{_log_hint(log_file)}")
        time.sleep(0.1)
    raise StackError(f"{what} not ready after {timeout:.0f}s{_log_hint(log_file)}")


def _log_hint(log_file: Path | None) -> str:
    if log_file is None or not log_file.exists():
        return ""
    lines = log_file.read_text(errors="replace").strip().splitlines()
    last = lines[-1][:200] if lines else ""
    return f"; see {log_file} (last line: {last})" if last else f"; see {log_file}"

"""``make up`` / ``make down``: the embedded stack's parts, started once, stopped by pid.

Each part is a background process with a pid file under ``.data/run`` and a log under
``.data/logs``. ``up`` is idempotent (a part already running is left alone) and refuses a
port some other program holds; ``down`` stops only the processes ``up`` recorded.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from db.migrate import upgrade
from mailer.core.errors import StackError
from mailer.stack import postgres
from mailer.stack.binaries import redis_binary, temporal_binary
from mailer.stack.config import StackSettings
from mailer.stack.processes import (
    forget,
    port_accepts,
    port_is_free,
    record,
    spawn,
    terminate,
    tracked,
    wait_until,
)
from mailer.stack.smtpbz_stub import StubAccount
from workflows.search_attributes import CLI_TYPE_NAMES

# Stopped in reverse order, so the worker goes before the servers it uses.
PART_ORDER = ("postgres", "redis", "temporal", "smtp-sink", "smtpbz-stub", "web", "worker")


@dataclass(frozen=True)
class PartStatus:
    name: str
    pid: int | None
    address: str
    started_now: bool = False


def temporal_command(stack: StackSettings) -> list[str]:
    db_dir = stack.root / "temporal"
    db_dir.mkdir(parents=True, exist_ok=True)
    command = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        stack.host,
        "--port",
        str(stack.temporal_port),
        "--ui-port",
        str(stack.temporal_ui_port),
        "--db-filename",
        str(db_dir / "temporal.db"),
        "--ui-disable-news-fetch",
        "--log-level",
        "warn",
    ]
    for name, type_name in CLI_TYPE_NAMES.items():
        command += ["--search-attribute", f"{name}={type_name}"]
    return command


def redis_command(stack: StackSettings) -> list[str]:
    redis_dir = stack.root / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    return [
        redis_binary(),
        "--port",
        str(stack.redis_port),
        "--bind",
        stack.host,
        "--dir",
        str(redis_dir),
        # The hour's window must survive a restart: append-only file, synced every second
        # (and mailer re-seeds a missing window from the send log anyway).
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--daemonize",
        "no",
    ]


def _check_ports(name: str, stack: StackSettings, ports: dict[str, int]) -> None:
    for variable, port in ports.items():
        if not port_is_free(stack.host, port):
            raise StackError(
                f"{name}: port {port} on {stack.host} is already in use by another program; "
                f"free it or choose another with {variable}"
            )


def _start_process(
    name: str,
    stack: StackSettings,
    command: list[str],
    ports: dict[str, int],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
) -> PartStatus:
    address = f"{stack.host}:{next(iter(ports.values()))}"
    existing = tracked(stack.run_dir, name)
    if existing is not None:
        return PartStatus(name, existing.pid, address)
    _check_ports(name, stack, ports)
    log_file = stack.log_dir / f"{name}.log"
    pid = spawn(command, log_file, env=env)
    record(stack.run_dir, name, pid)

    def alive() -> bool:
        return tracked(stack.run_dir, name) is not None

    try:
        wait_until(
            lambda: all(port_accepts(stack.host, port) for port in ports.values()),
            what=name,
            timeout=timeout,
            alive=alive,
            log_file=log_file,
        )
    except StackError:
        terminate(pid)
        forget(stack.run_dir, name)
        raise
    return PartStatus(name, pid, address, started_now=True)


def _start_postgres(stack: StackSettings) -> PartStatus:
    pgdata = stack.root / "postgres"
    address = f"{stack.host}:{stack.postgres_port}"
    existing = tracked(stack.run_dir, "postgres")
    if existing is not None and postgres.running_pid(pgdata) == existing.pid:
        return PartStatus("postgres", existing.pid, address)
    _check_ports("postgres", stack, {"MAILER_STACK_POSTGRES_PORT": stack.postgres_port})
    pid = postgres.start(pgdata, stack.postgres_port, stack.log_dir / "postgres.log")
    record(stack.run_dir, "postgres", pid)
    postgres.ensure_database(stack.postgres_port, stack.postgres_database)
    return PartStatus("postgres", pid, address, started_now=True)


def connection_settings(stack: StackSettings) -> dict[str, str]:
    """The ``MAILER_*`` variables that point mailer at the embedded stack."""
    return {
        "MAILER_DATABASE_URL": postgres.url(stack.postgres_port, stack.postgres_database),
        "MAILER_REDIS_URL": f"redis://{stack.host}:{stack.redis_port}/0",
        "MAILER_TEMPORAL_ADDRESS": f"{stack.host}:{stack.temporal_port}",
        "MAILER_TEMPORAL_UI_URL": f"http://{stack.host}:{stack.temporal_ui_port}",
        "MAILER_SMTP_BZ_API_URL": f"http://{stack.host}:{stack.smtpbz_port}/v1",
        "MAILER_WEB_HOST": stack.host,
        "MAILER_WEB_PORT": str(stack.web_port),
        "MAILER_INBOUND_PORT": str(stack.inbound_port),
        "MAILER_UNSUBSCRIBE_BASE_URL": f"http://{stack.host}:{stack.web_port}",
        "MAILER_UNSUBSCRIBE_SECRET": unsubscribe_secret(stack),
        # Not read by mailer itself: what `mailer account set` should point at.
        "MAILER_SINK_SMTP_HOST": stack.host,
        "MAILER_SINK_SMTP_PORT": str(stack.smtp_port),
        "MAILER_SINK_OUTBOX": str(stack.outbox),
        "MAILER_STUB_SMTP_BZ_API_KEY": stack.smtpbz_api_key,
    }


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), from the first byte:
    created with that mode, and an older file's mode corrected before it is rewritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)


def unsubscribe_secret(stack: StackSettings) -> str:
    """The stack's unsubscribe signing key: made once, kept in the data directory (links in
    messages already sent stay valid across restarts)."""
    path = stack.unsubscribe_secret_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, secrets.token_urlsafe(32))
    return path.read_text().strip()


def write_env_file(stack: StackSettings) -> Path:
    lines = ["# Written by `make up`: the embedded stack's connection settings.", ""]
    lines += [f"{key}={value}" for key, value in connection_settings(stack).items()]
    stack.env_file.parent.mkdir(parents=True, exist_ok=True)
    write_private(stack.env_file, "\n".join(lines) + "\n")  # it holds the secret
    return stack.env_file


def up(stack: StackSettings, *, on_part: Callable[[PartStatus], None] = lambda _: None) -> None:
    """Start every part that is not running, migrate the database, write ``mailer.env``."""
    stack.root.mkdir(parents=True, exist_ok=True)
    stub_state = stack.root / "smtpbz.json"
    if not stub_state.exists():
        StubAccount(api_key=stack.smtpbz_api_key).save(stub_state)
    for name in SERVER_PARTS:
        if name != "web":
            on_part(start_part(stack, name))
    write_env_file(stack)
    upgrade(postgres.url(stack.postgres_port, stack.postgres_database))
    on_part(start_part(stack, "web"))  # it serves from the migrated database


# The servers `up` starts, in order (the worker is started on its own).
SERVER_PARTS = PART_ORDER[:-1]


def start_part(stack: StackSettings, name: str) -> PartStatus:
    """Start one server of the stack unless it runs (after ``stop_part``, with its data)."""
    if name == "postgres":
        return _start_postgres(stack)
    if name == "redis":
        ports = {"MAILER_STACK_REDIS_PORT": stack.redis_port}
        return _start_process("redis", stack, redis_command(stack), ports, timeout=30)
    if name == "temporal":
        ports = {
            "MAILER_STACK_TEMPORAL_PORT": stack.temporal_port,
            "MAILER_STACK_TEMPORAL_UI_PORT": stack.temporal_ui_port,
        }
        return _start_process("temporal", stack, temporal_command(stack), ports, timeout=90)
    if name == "smtp-sink":
        command = _python_module_command(
            "mailer.stack.smtp_sink", stack.host, stack.smtp_port, "--outbox", stack.outbox
        )
        ports = {"MAILER_STACK_SMTP_PORT": stack.smtp_port}
        return _start_process("smtp-sink", stack, command, ports, timeout=30)
    if name == "smtpbz-stub":
        command = _python_module_command(
            "mailer.stack.smtpbz_stub",
            stack.host,
            stack.smtpbz_port,
            "--state",
            stack.root / "smtpbz.json",
        )
        ports = {"MAILER_STACK_SMTPBZ_PORT": stack.smtpbz_port}
        return _start_process("smtpbz-stub", stack, command, ports, timeout=30)
    if name == "web":
        command = [sys.executable, "-m", "mailer.cli", "web"]
        ports = {
            "MAILER_STACK_WEB_PORT": stack.web_port,
            "MAILER_STACK_INBOUND_PORT": stack.inbound_port,
        }
        env = {**os.environ, **connection_settings(stack), "MAILER_ENV_FILES": ""}
        return _start_process("web", stack, command, ports, timeout=30, env=env)
    raise ValueError(f"no such part of the stack: {name!r}")


def stop_part(stack: StackSettings, name: str) -> bool:
    """Stop one part ``up`` (or ``start_worker``) started; False if it was not running."""
    part = tracked(stack.run_dir, name)
    if name == "worker":
        stack.worker_env_file.unlink(missing_ok=True)  # its limits no longer apply
    if part is None:
        forget(stack.run_dir, name)
        return False
    if name == "postgres":
        postgres.stop(stack.root / "postgres")
    else:
        terminate(part.pid)
    forget(stack.run_dir, name)
    return True


def _python_module_command(
    module: str, host: str, port: int, file_option: str, file: Path
) -> list[str]:
    """``python -m MODULE --host H --port P --<file option> FILE`` with this interpreter."""
    return [
        sys.executable,
        "-m",
        module,
        "--host",
        host,
        "--port",
        str(port),
        file_option,
        str(file),
    ]


def start_worker(stack: StackSettings, env: dict[str, str] | None = None) -> PartStatus:
    """Run ``worker.py`` in the background as part of the stack (``make demo``)."""
    existing = tracked(stack.run_dir, "worker")
    if existing is not None:
        return PartStatus("worker", existing.pid, "-")
    merged = dict(os.environ)
    merged.update(connection_settings(stack))
    merged.update(env or {})
    _write_worker_env_file(stack, env or {})
    log_file = stack.log_dir / "worker.log"
    pid = spawn([sys.executable, "-m", "worker"], log_file, env=merged)
    record(stack.run_dir, "worker", pid)
    return PartStatus("worker", pid, "-", started_now=True)


def _write_worker_env_file(stack: StackSettings, overrides: dict[str, str]) -> None:
    """Record the worker's own limits where the CLI reads them: the rate window and working
    hours are enforced by the worker, and ``mailer status``/``doctor`` must judge by those,
    not by the defaults (the demo's worker sends 6,000/h, not 100/h)."""
    if not overrides:
        stack.worker_env_file.unlink(missing_ok=True)
        return
    lines = ["# Written when the stack's worker started: its settings beyond mailer.env.", ""]
    lines += [f"{key}={value}" for key, value in overrides.items()]
    write_private(stack.worker_env_file, "\n".join(lines) + "\n")


def down(stack: StackSettings) -> list[str]:
    """Stop what ``up`` (and ``start_worker``) started; returns the names stopped."""
    return [name for name in reversed(PART_ORDER) if stop_part(stack, name)]


def status(stack: StackSettings) -> list[PartStatus]:
    ports = {
        "postgres": stack.postgres_port,
        "redis": stack.redis_port,
        "temporal": stack.temporal_port,
        "smtp-sink": stack.smtp_port,
        "smtpbz-stub": stack.smtpbz_port,
        "web": stack.web_port,
    }
    result = []
    for name in PART_ORDER:
        part = tracked(stack.run_dir, name)
        port = ports.get(name)
        address = f"{stack.host}:{port}" if port else "-"
        result.append(PartStatus(name, part.pid if part else None, address))
    return result

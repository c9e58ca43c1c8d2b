"""PostgreSQL from the ``pgserver`` wheel's binaries, listening on a loopback TCP port.

pgserver's own ``get_server`` listens only on a Unix socket and stops the server when the
Python process exits; the stack needs a server that outlives ``make up`` and a plain
``postgresql://`` URL, so we drive its bundled ``initdb``/``pg_ctl`` directly. PostgreSQL
refuses to run as root: as root the cluster is owned by the unprivileged ``pgserver`` user
(created on demand, as pgserver itself does).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

from mailer.core.errors import StackError

SERVICE_USER = "pgserver"
SUPERUSER = "postgres"


def _pginstall() -> Path:
    # Located without importing pgserver, whose import warns about XDG_RUNTIME_DIR.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("the pgserver package is not installed: pip install 'mailer[embedded]'")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def _bin(name: str) -> str:
    return str(_pginstall() / "bin" / name)


def _run_as_owner(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    user = SERVICE_USER if os.geteuid() == 0 else None
    try:
        return subprocess.run(
            args, user=user, check=True, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip().splitlines()
        raise StackError(f"{Path(args[0]).name} failed: {detail[-1] if detail else exc}") from None


def _prepare_for_service_user(pgdata: Path) -> None:
    owner = service_owner()
    if owner is None:
        return
    import stat
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions

    ensure_prefix_permissions(pgdata)
    readable = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(_pginstall() / "bin", readable | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(_pginstall() / "lib", readable)
    os.chown(pgdata, *owner)


def service_owner() -> tuple[int, int] | None:
    """The uid and gid a cluster's files must have when we run as root (the service
    user's, created on demand); ``None`` otherwise (ours, as files are made)."""
    if os.geteuid() != 0:
        return None
    _pginstall()  # one line naming the package when it is missing (a production image)
    import pwd
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.utils import ensure_user_exists

    ensure_user_exists(SERVICE_USER)
    entry = pwd.getpwnam(SERVICE_USER)
    return entry.pw_uid, entry.pw_gid


def ensure_cluster(pgdata: Path) -> None:
    """Create the cluster in ``pgdata`` unless it exists (trust auth, UTF-8)."""
    pgdata.mkdir(parents=True, exist_ok=True)
    _prepare_for_service_user(pgdata)
    if (pgdata / "PG_VERSION").exists():
        return
    _run_as_owner(
        [
            _bin("initdb"),
            "-D",
            str(pgdata),
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "-U",
            SUPERUSER,
        ],
        timeout=120,
    )


def running_pid(pgdata: Path) -> int | None:
    """The postmaster's pid if the cluster in ``pgdata`` is running."""
    pid_file = pgdata / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def start(pgdata: Path, port: int, log_file: Path, *, durable: bool = True) -> int:
    """Start the server on 127.0.0.1:``port`` and wait until it accepts connections.

    ``durable=False`` (throwaway clusters only) skips fsync: a commit then costs a tenth,
    and nothing is kept across a crash of the machine anyway.
    """
    ensure_cluster(pgdata)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.touch()
    owner = service_owner()
    if owner is not None:
        os.chown(log_file, *owner)
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' "
        "-c max_connections=200"
    )
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    _run_as_owner(
        [_bin("pg_ctl"), "-D", str(pgdata), "-l", str(log_file), "-o", options, "-w", "start"],
        timeout=120,
    )
    pid = running_pid(pgdata)
    if pid is None:
        raise StackError(f"postgres did not start; see {log_file}")
    return pid


def stop(pgdata: Path) -> None:
    """Stop the server (fast shutdown: open transactions roll back)."""
    if running_pid(pgdata) is None:
        return
    _run_as_owner([_bin("pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"], timeout=120)


def url(port: int, database: str) -> str:
    return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/{database}"


def ensure_database(port: int, database: str) -> None:
    """Create ``database`` unless it exists."""
    import psycopg

    with psycopg.connect(
        f"host=127.0.0.1 port={port} user={SUPERUSER} dbname=postgres", autocommit=True
    ) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')

"""A stopped, migrated PostgreSQL cluster kept in the user's cache, for throwaways to copy.

Every throwaway cluster (a forecast, the test session, a benchmark) used to run ``initdb``
and the migrations: about 0.9 s of a forecast's start. Their result only changes with
PostgreSQL's build and the migrations, so it is made once, kept under
``$XDG_CACHE_HOME/mailer`` (``~/.cache/mailer``), and copied: 0.1 s.

The copy is only taken from a directory this user owns that nobody else can write to: a
data directory holds settings PostgreSQL acts on (``postgresql.auto.conf`` can name
commands), so one planted by someone else is never started. Anything unusable is ignored
and the cluster is made from scratch, as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from db.migrate import MIGRATIONS_DIR

# Bumped when what a cached cluster holds changes for a reason the key cannot see.
FORMAT = "1"
# Written last into an entry: a directory without it was never finished.
COMPLETE = "mailer-template-complete"
# A copy still being made after this long was left by a process that died: removed.
ABANDONED_AFTER = 3600.0
# Another key's entry (another checkout's migrations, an older build) unused this long is
# removed; one in use by a forecast of that checkout right now is never this old.
UNUSED_AFTER = 600.0


def cache_root() -> Path | None:
    """Where entries are kept; ``None`` for a user without a home (a container's bare uid):
    then every cluster is made from scratch."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:  # no HOME and no passwd entry
            return None
    return Path(base) / "mailer"


def template_key(migrations: Path | None = None) -> str:
    """What the cached cluster depends on: PostgreSQL's build and every migration file."""
    digest = hashlib.sha256(FORMAT.encode())
    for package in ("pgserver", "alembic", "sqlalchemy"):  # the server, the DDL's makers
        try:
            digest.update(f"{package} {importlib.metadata.version(package)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{package} none".encode())
    folder = migrations or MIGRATIONS_DIR
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in {".py", ".ini", ".mako"}:
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _private(path: Path) -> bool:
    """Ours, and writable by nobody else (a symbolic link is not followed)."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.geteuid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def cached_template(key: str, root: Path | None = None) -> Path | None:
    """The finished entry for ``key``, if there is one that is safe to copy."""
    root = root or cache_root()
    if root is None:
        return None
    entry = root / f"postgres-{key}"
    if _private(root) and _private(entry) and (entry / COMPLETE).is_file():
        return entry
    return None


def copy_template(entry: Path, pgdata: Path, owner: tuple[int, int] | None) -> None:
    """``entry``'s cluster into ``pgdata`` (which must not exist), owned by ``owner``'s
    uid and gid when given (as root the cluster belongs to the service user)."""
    shutil.copytree(entry, pgdata, symlinks=True, ignore=shutil.ignore_patterns(COMPLETE))
    pgdata.chmod(0o700)  # PostgreSQL refuses a data directory others can read
    if owner is not None:
        for directory, _, files in os.walk(pgdata):
            os.chown(directory, *owner)
            for name in files:
                os.chown(os.path.join(directory, name), *owner, follow_symlinks=False)


def keep_template(key: str, pgdata: Path, root: Path | None = None) -> None:
    """Keep the stopped cluster in ``pgdata`` as the entry for ``key``; other keys' entries
    (older migrations or builds) unused for ``UNUSED_AFTER`` and copies left half-made by a
    killed process are removed. Best effort: a cache that cannot be written leaves things
    as they were."""
    root = root or cache_root()
    if root is None:
        return
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private(root):
            return
        building = Path(tempfile.mkdtemp(prefix="building-", dir=root))
    except OSError:
        return
    try:
        copied = building / "cluster"
        shutil.copytree(pgdata, copied, symlinks=True)
        (copied / COMPLETE).write_text(key + "\n")
        with contextlib.suppress(OSError):  # a concurrent builder's entry won: the same
            copied.rename(root / f"postgres-{key}")  # atomic
    except OSError:
        return  # a full disk, say: this cluster is made from scratch, as the next one
    finally:
        shutil.rmtree(building, ignore_errors=True)
    for stale in root.iterdir():
        abandoned = stale.name.startswith("building-") and _older_than(stale, ABANDONED_AFTER)
        other = stale.name.startswith("postgres-") and stale.name != f"postgres-{key}"
        if abandoned or (other and _older_than(stale, UNUSED_AFTER)):
            shutil.rmtree(stale, ignore_errors=True)


def forget(root: Path | None = None) -> None:
    """Remove the current key's entry (one that was copied and would not start)."""
    entry = cached_template(template_key(), root)
    if entry is not None:
        shutil.rmtree(entry, ignore_errors=True)


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.lstat().st_mtime > seconds
    except OSError:
        return False


def with_template(
    pgdata: Path,
    owner: tuple[int, int] | None,
    build: Callable[[], None],
    *,
    root: Path | None = None,
) -> bool:
    """Fill ``pgdata`` from the cache; on a miss, ``build()`` makes the stopped cluster in
    ``pgdata`` and it is kept for next time. Returns whether the cache was used."""
    key = template_key()
    entry = cached_template(key, root)
    if entry is not None:
        try:
            os.utime(entry)  # in use: not another checkout's to remove (keep_template)
            copy_template(entry, pgdata, owner)
            return True
        except OSError:
            shutil.rmtree(pgdata, ignore_errors=True)  # made from scratch below
    build()
    keep_template(key, pgdata, root)
    return False

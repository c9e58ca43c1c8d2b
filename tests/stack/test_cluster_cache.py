"""Throwaway clusters copied from the user's cache of a migrated one (mailer.stack.cluster_cache)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import psycopg
import pytest
from alembic.script import ScriptDirectory

from db.migrate import MIGRATIONS_DIR, alembic_config
from mailer.stack import throwaway
from mailer.stack.cluster_cache import (
    COMPLETE,
    cached_template,
    keep_template,
    template_key,
)
from mailer.stack.throwaway import postgres_cluster, ram_directory


def _revision_and_tables(url: str) -> tuple[str, int]:
    libpq = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq) as conn:
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'mailer_%'"
        ).fetchone()
    assert revision is not None and tables is not None
    return str(revision[0]), int(tables[0])


def test_the_first_cluster_fills_the_cache_and_the_next_is_copied_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()

    with postgres_cluster() as first:
        assert not first.from_cache
        made = _revision_and_tables(first.new_database())
    entries = list((tmp_path / "mailer").glob("postgres-*"))
    assert [entry.name for entry in entries] == [f"postgres-{template_key()}"]
    assert (entries[0] / COMPLETE).is_file()
    assert not (entries[0] / "postmaster.pid").exists()  # kept stopped, not running

    with postgres_cluster() as second:
        assert second.from_cache
        assert _revision_and_tables(second.new_database()) == made
    assert made[0] == head and made[1] >= 9  # the seed's tables and those added since

    # Damaged since it was kept (a file gone): that copy does not start, so the entry goes
    # and the cluster is made from scratch, and kept again.
    (entries[0] / "global" / "pg_control").unlink()
    with postgres_cluster() as third:
        assert not third.from_cache
        assert _revision_and_tables(third.new_database()) == made
    assert (entries[0] / "global" / "pg_control").is_file()
    with postgres_cluster() as fourth:
        assert fourth.from_cache


def test_an_entry_others_could_have_planted_or_never_finished_is_not_used(
    tmp_path: Path,
) -> None:
    root, pgdata = tmp_path / "cache", tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("16\n")
    keep_template("k1", pgdata, root)
    entry = cached_template("k1", root)
    assert entry == root / "postgres-k1"
    assert (entry / "PG_VERSION").read_text() == "16\n"

    entry.chmod(0o777)  # anyone could have changed what it holds
    assert cached_template("k1", root) is None
    entry.chmod(0o700)
    root.chmod(0o777)  # anyone could have put it there
    assert cached_template("k1", root) is None
    root.chmod(0o700)
    (root / "postgres-k2").symlink_to(entry)  # a link is not followed
    assert cached_template("k2", root) is None
    if os.geteuid() == 0:  # only root can give a directory away
        os.chown(entry, 65534, 65534)
        assert cached_template("k1", root) is None
        os.chown(entry, 0, 0)
    assert cached_template("k1", root) == entry
    (entry / COMPLETE).unlink()  # a copy that stopped half-way
    assert cached_template("k1", root) is None


def test_entries_unused_for_long_and_abandoned_copies_go(tmp_path: Path) -> None:
    root, pgdata = tmp_path / "cache", tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("16\n")
    keep_template("old", pgdata, root)
    keep_template("other", pgdata, root)  # another checkout's, in use a moment ago
    abandoned, underway = root / "building-killed", root / "building-underway"
    for copy in (abandoned, underway):
        copy.mkdir()
    two_hours_ago = time.time() - 7200
    for stale in (abandoned, root / "postgres-old"):
        os.utime(stale, (two_hours_ago, two_hours_ago))
    keep_template("new", pgdata, root)
    assert sorted(path.name for path in root.iterdir()) == [
        "building-underway",
        "postgres-new",
        "postgres-other",
    ]


def test_a_changed_migration_changes_the_key(tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, migrations)
    assert template_key(migrations) == template_key()
    latest = sorted((migrations / "versions").glob("*.py"))[-1]
    latest.write_text(latest.read_text() + "\n# changed\n")
    assert template_key(migrations) != template_key()


def _data_directory(cluster: throwaway.PostgresCluster) -> Path:
    with cluster.admin() as conn:
        row = conn.execute("SHOW data_directory").fetchone()
    assert row is not None
    return Path(row[0]).resolve()


def test_a_forecast_cluster_goes_in_memory_where_there_is_room_else_where_the_rest_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = tmp_path / "memory"  # stands in for /dev/shm: any directory with room
    memory.mkdir()
    monkeypatch.setattr(throwaway, "RAM_DIRECTORY", memory)
    monkeypatch.setattr(throwaway, "RAM_DIRECTORY_MIN_FREE", 1)
    assert ram_directory() == memory
    with postgres_cluster(in_memory=True) as cluster:
        assert _data_directory(cluster).is_relative_to(memory.resolve())
        # Its one database is the migrated template itself, ready to use.
        assert _revision_and_tables(cluster.template_url())[1] >= 9
    assert list(memory.iterdir()) == []  # removed with the cluster
    with postgres_cluster(in_memory=True, durable=True) as durable:  # never in memory
        assert not _data_directory(durable).is_relative_to(memory.resolve())

    monkeypatch.setattr(throwaway, "RAM_DIRECTORY_MIN_FREE", shutil.disk_usage(memory).total + 1)
    assert ram_directory() is None  # too little room (a container's 64 MiB /dev/shm)
    monkeypatch.setattr(throwaway, "RAM_DIRECTORY", tmp_path / "none")
    assert ram_directory() is None  # no such directory
    with postgres_cluster(in_memory=True) as cluster:
        assert not _data_directory(cluster).is_relative_to(memory.resolve())

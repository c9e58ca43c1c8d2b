"""Throwaway servers on free loopback ports: a PostgreSQL cluster and Redis.

Used by the tests, the benchmarks and ``mailer simulate``; each is removed when its
context ends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from db.migrate import upgrade
from mailer.core.errors import StackError
from mailer.stack import cluster_cache, postgres
from mailer.stack.binaries import redis_binary
from mailer.stack.config import StackSettings
from mailer.stack.processes import port_accepts, terminate, wait_until

TEMPLATE_DB = "mailer_template"
# Where a cluster that asks for it lives in memory: Linux's tmpfs. Copying the cached
# cluster there took 0.1 s instead of 0.5 s on this project's disk (1,360 files).
RAM_DIRECTORY = Path("/dev/shm")
# Containers often mount a 64 MiB /dev/shm: a forecast's cluster then goes on the disk.
RAM_DIRECTORY_MIN_FREE = 1 << 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stack_on_free_ports(data_dir: Path) -> StackSettings:
    """The embedded stack's settings for a throwaway copy: ``data_dir``, free ports."""
    return StackSettings(
        data_dir=data_dir,
        postgres_port=free_port(),
        redis_port=free_port(),
        temporal_port=free_port(),
        temporal_ui_port=free_port(),
        smtp_port=free_port(),
        smtpbz_port=free_port(),
        web_port=free_port(),
        inbound_port=free_port(),
    )


@dataclass
class PostgresCluster:
    port: int
    from_cache: bool = False  # copied from the cache of a migrated cluster

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        )

    def migrated_template(self) -> None:
        postgres.ensure_database(self.port, TEMPLATE_DB)
        upgrade(postgres.url(self.port, TEMPLATE_DB))

    def template_url(self) -> str:
        """The migrated template database itself, for a cluster that will hold this one
        database only: no copy is made (0.26 s), and none can be while it is connected."""
        return postgres.url(self.port, TEMPLATE_DB)

    def new_database(self) -> str:
        """A fresh, migrated database (a copy of the template); returns its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE_DB}')
        return postgres.url(self.port, name)


def ram_directory() -> Path | None:
    """A memory-backed directory with room for a throwaway cluster, if the machine has one."""
    try:
        room = shutil.disk_usage(RAM_DIRECTORY).free
    except OSError:
        return None
    if room < RAM_DIRECTORY_MIN_FREE or not os.access(RAM_DIRECTORY, os.W_OK | os.X_OK):
        return None
    return RAM_DIRECTORY


@contextmanager
def postgres_cluster(
    *, durable: bool = False, cached: bool = True, in_memory: bool = False
) -> Iterator[PostgresCluster]:
    """A migrated cluster in a temporary directory; not fsynced unless ``durable``
    (benchmarks that compare with production ask for it).

    ``cached``: copied from the user's cache of a migrated cluster
    (:mod:`mailer.stack.cluster_cache`), made and kept there the first time.
    ``in_memory``: the directory is on :func:`ram_directory` where there is one (a short
    run's cluster that is never durable: ``mailer simulate``'s), else the usual one."""
    where = ram_directory() if in_memory and not durable else None
    root = Path(tempfile.mkdtemp(prefix="mailer-pg-", dir=where))
    pgdata = root / "data"
    log_file = root / "postgres.log"
    port = free_port()
    cluster = PostgresCluster(port)

    def build() -> None:  # the cluster the cache keeps: migrated, then stopped cleanly
        postgres.start(pgdata, port, log_file, durable=False)
        try:
            cluster.migrated_template()
        finally:
            postgres.stop(pgdata)

    def fill() -> None:  # from the cache, or made (and kept) on a miss
        cluster.from_cache = cluster_cache.with_template(pgdata, postgres.service_owner(), build)

    try:
        if cached:
            fill()
        try:
            postgres.start(pgdata, port, log_file, durable=durable)
        except StackError:
            if not cluster.from_cache:
                raise
            # A copy that does not start: the entry was damaged since it was kept. It goes,
            # and this cluster is made from scratch (and kept again).
            cluster_cache.forget()
            shutil.rmtree(pgdata, ignore_errors=True)
            fill()
            postgres.start(pgdata, port, log_file, durable=durable)
        if not cached:
            cluster.migrated_template()
        yield cluster
    finally:
        postgres.stop(pgdata)
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class RedisServer:
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@contextmanager
def serving(command: list[str], port: int, what: str, **popen: Any) -> Iterator[int]:
    """Run ``command`` until the context ends, once it accepts connections on ``port``."""
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen
    )
    try:
        wait_until(
            lambda: port_accepts("127.0.0.1", port),
            what=what,
            timeout=20,
            alive=lambda: process.poll() is None,
        )
        yield process.pid
    finally:
        terminate(process.pid)
        process.wait(10)


@contextmanager
def redis_server(port: int | None = None) -> Iterator[RedisServer]:
    root = Path(tempfile.mkdtemp(prefix="mailer-redis-"))
    port = port or free_port()
    command = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(root)]
    command += ["--save", "", "--appendonly", "no"]
    try:
        with serving(command, port, "redis") as pid:
            yield RedisServer(port=port, pid=pid)
    finally:
        shutil.rmtree(root, ignore_errors=True)

"""Fixtures starting real servers: PostgreSQL (pgserver's binaries), Redis, SMTP, HTTP."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine

from mailer import settings as settings_module
from tests.servers import PostgresCluster, RedisServer, postgres_cluster, redis_server

# Tests never read a developer's .data/mailer.env or .env.
os.environ[settings_module.ENV_FILES_VARIABLE] = ""


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def database_url(pg_cluster: PostgresCluster) -> str:
    """A fresh migrated database for this test."""
    return pg_cluster.new_database()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def mailer_env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[dict[str, str]]:
    """MAILER_* variables pointing at this test's database; settings re-read."""
    values = {"MAILER_DATABASE_URL": database_url}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    settings_module.get_settings.cache_clear()
    yield values
    settings_module.get_settings.cache_clear()

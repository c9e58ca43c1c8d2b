"""A worker's database pool follows its activities: no batch waits on another's checkout."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.pool import QueuePool

from db import engine as engine_module
from db.engine import get_engine, size_pools
from mailer.runtime.worker import CONNECTIONS_PER_ACTIVITY

URL = "postgresql+psycopg://postgres@127.0.0.1:9/never_connected"


@pytest.fixture
def restore_pool_size() -> Iterator[None]:
    before = engine_module._max_connections
    yield
    size_pools(before)


def test_engines_open_as_many_connections_as_the_worker_sized_them_for(
    restore_pool_size: None,
) -> None:
    size_pools(CONNECTIONS_PER_ACTIVITY * 16)
    pool = get_engine(URL).pool
    assert isinstance(pool, QueuePool)
    assert pool.size() + pool._max_overflow == 48
    size_pools(5)
    small = get_engine(URL).pool
    assert isinstance(small, QueuePool)
    assert small.size() + small._max_overflow == 5

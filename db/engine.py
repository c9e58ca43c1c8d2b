"""Engines and sessions. One engine per URL per process; sessions are short-lived."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker


@functools.cache
def get_engine(url: str) -> Engine:
    """A pooled engine for ``url`` (a ``postgresql+psycopg://`` URL)."""
    # hide_parameters: statement parameters (recipients' addresses) never reach an error
    # message, so never a log line or Temporal's history.
    return create_engine(
        url, pool_pre_ping=True, pool_size=10, max_overflow=10, hide_parameters=True
    )


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session committed on success and rolled back on any error."""
    factory = sessionmaker(get_engine(url), expire_on_commit=False)
    with factory() as session, session.begin():
        yield session

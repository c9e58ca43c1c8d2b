"""Engines and sessions. One engine per URL per process; sessions are short-lived."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

# Connections an engine may open at once; a worker sizes it to its activities (each send
# batch holds up to three at a time) before creating any engine: ``size_pools``.
_max_connections = 20


def size_pools(max_connections: int) -> None:
    """Engines created from now on open at most ``max_connections`` connections each."""
    global _max_connections
    _max_connections = max_connections
    get_engine.cache_clear()
    _sessions.cache_clear()


#: How mailer's connections name themselves to PostgreSQL (pg_stat_activity, and migration
#: 0006's trigger, which takes only other writers' changes as the CRM's requests).
APPLICATION_NAME = "mailer"
#: The worker's connection that LISTENs for the CRM's requests (mailer.runtime.request_listener).
LISTENER_APPLICATION_NAME = f"{APPLICATION_NAME}-listener"


@functools.cache
def get_engine(url: str) -> Engine:
    """A pooled engine for ``url`` (a ``postgresql+psycopg://`` URL)."""
    # hide_parameters: statement parameters (recipients' addresses) never reach an error
    # message, so never a log line or Temporal's history.
    pool_size = min(10, _max_connections)
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=_max_connections - pool_size,
        hide_parameters=True,
        # mailer's writes mirror its workflows; the CRM's are requests (migration 0006's
        # trigger tells them apart by this name).
        connect_args={"application_name": APPLICATION_NAME},
    )


@functools.cache
def _sessions(url: str) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session committed on success and rolled back on any error."""
    with _sessions(url)() as session, session.begin():
        yield session

"""Run Alembic migrations programmatically (``mailer db upgrade``, the stack, tests)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config for our migrations; without ``url`` the settings' URL is used."""
    # Alembic is imported where it is used: 0.1 s every `mailer` command paid at start.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (the latest by default)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)

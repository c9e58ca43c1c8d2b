"""Where the embedded stack listens and keeps its data (``MAILER_STACK_*`` variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAILER_STACK_", env_file=".env", extra="ignore")

    data_dir: Path = Path(".data")
    host: str = "127.0.0.1"
    postgres_port: int = Field(54329, ge=1, le=65535)
    postgres_database: str = "mailer"
    redis_port: int = Field(63790, ge=1, le=65535)
    temporal_port: int = Field(7233, ge=1, le=65535)
    temporal_ui_port: int = Field(8233, ge=1, le=65535)
    smtp_port: int = Field(2525, ge=1, le=65535)
    smtpbz_port: int = Field(18025, ge=1, le=65535)
    web_port: int = Field(8090, ge=1, le=65535)
    inbound_port: int = Field(2526, ge=1, le=65535)  # `mailer web`'s SMTP receiver
    smtpbz_api_key: str = "demo-api-key"

    @property
    def root(self) -> Path:
        return self.data_dir.resolve()

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    @property
    def unsubscribe_secret_file(self) -> Path:
        return self.root / "unsubscribe.secret"

    @property
    def env_file(self) -> Path:
        return self.root / "mailer.env"

    @property
    def worker_env_file(self) -> Path:
        """The settings the stack's worker runs with beyond ``env_file`` (kept while it runs)."""
        return self.root / "worker.env"

"""Every ``MAILER_*`` setting, read once from the environment and optional env files.

The five limits of the seed keep their names and defaults. Files read, later ones winning:
``.data/mailer.env`` (written by ``make up``), ``.env``, and ``.data/worker.env`` (the
limits the embedded stack's worker was started with, e.g. the demo's, so that ``status``
and ``doctor`` judge by the limits actually enforced); real environment variables win over
all. A wrong value fails at start-up with one line naming the variable.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from mailer.core.errors import ConfigError
from mailer.core.event_loop import EventLoopKind
from mailer.core.working_days import country_code, parse_working_days, read_dates_file
from mailer.mail.pacing import DomainPacing, parse_domain_rates

ENV_PREFIX = "MAILER_"
DEFAULT_ENV_FILES = (".data/mailer.env", ".env", ".data/worker.env")
# Comma-separated list of env files to read instead of the defaults; empty reads none.
ENV_FILES_VARIABLE = "MAILER_ENV_FILES"


class Settings(BaseSettings):
    """Process-wide configuration. Account-level settings (SMTP, daily limit) live in the DB."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    # The seed's five limits (names and defaults unchanged).
    max_campaign_recipients: int = Field(10_000, ge=1)
    throttle_campaign_start_per_hour: int = Field(10, ge=1)
    throttle_test_email_per_hour: int = Field(5, ge=1)
    circuit_breaker_threshold: int = Field(10, ge=1)
    transient_retry_delay_minutes: float = Field(5, gt=0)

    # Sending calendar and rate.
    timezone: str = "Europe/Moscow"
    working_hours_start: int = Field(9, ge=0, le=23)
    working_hours_end: int = Field(18, ge=1, le=24)
    rate_per_hour: int = Field(100, ge=1)
    # Most recipients one send activity handles. Where the hourly rate is the seed's 100 it
    # is the rate that sizes a batch; above it, fewer longer batches spend less per email on
    # planning, the activity's round trip through Temporal and its connections.
    send_batch_size: int = Field(500, ge=1, le=1000)
    # A campaign's workflow continues as new past this many history events (the hard
    # limit is 51,200; short histories replay fast after a worker restart).
    continue_as_new_events: int = Field(5000, ge=200, le=40_000)
    # A send batch that stops heartbeating this long (a killed worker) is retried elsewhere,
    # and its claims' lease runs this long without renewal. The batch heartbeats and renews
    # from a background task (at least every second, a fifth of this at most), whatever
    # SMTP is doing, so this need not exceed the SMTP timeout: 3 s at the least.
    send_heartbeat_timeout_seconds: int = Field(5, ge=3, le=3600)
    # A recipient refused with a 4xx about itself (greylisting, mailbox full, its domain
    # unreachable) waits alone: the Nth refusal waits the Nth step of this schedule (minutes;
    # the last step repeats), so a greylist's usual 5 minutes pass at the first retry. It
    # fails after MAILER_RECIPIENT_MAX_ATTEMPTS tries or MAILER_RECIPIENT_MAX_AGE_HOURS after
    # its first refusal (an MTA's queue gives up after days too), whichever comes first.
    recipient_retry_minutes: str = "5,15,30,60"
    recipient_max_attempts: int = Field(10, ge=1, le=1000)
    recipient_max_age_hours: float = Field(72, gt=0, le=24 * 30)
    # A send batch failing with an error nothing classifies is retried this many times in
    # all; then it counts as one transient error (the breaker sees it), never loops unseen.
    send_batch_max_attempts: int = Field(5, ge=1, le=100)
    # Messages per minute to groups of domains (mailer.mail.pacing), e.g.
    # "mail.ru,bk.ru,inbox.ru,list.ru=20,yandex.ru=20,gmail.com=60"; empty: no pacing.
    domain_rate_per_minute: str = ""
    # Activities one worker runs at once; its database connections and threads follow
    # (a send batch holds up to three connections: planning, its ledger writes, its lease).
    max_concurrent_activities: int = Field(16, ge=1, le=256)
    # Campaign workflows one worker keeps in memory between their turns (the SDK's
    # max_cached_workflows). One not cached replays its history into a new instance at each
    # turn: campaigns in flight beyond this make every turn a replay (measured: 10,000
    # campaigns on two workers at the SDK's 1,000 stalled). Memory grows with it (docs/deploy.md).
    max_cached_workflows: int = Field(10_000, ge=0, le=1_000_000)
    # Run workflow code in the SDK's sandbox, which re-imports the workflow's module for every
    # campaign and intercepts non-deterministic calls (datetime.now, random, I/O) at run time.
    # Off in production (measured: 2.6x the memory per cached campaign and 2.3x the CPU per
    # replay); the test suite runs every workflow sandboxed, so such a call fails there.
    workflow_sandbox: bool = False
    # LISTEN for the CRM's requests (migration 0006's NOTIFY) and wake the dispatcher at once.
    # Off: the dispatcher's own 10 s turn only — for a pooler in transaction mode (PgBouncer's
    # default), which does not carry LISTEN.
    listen_for_requests: bool = True
    # Larger recipients files are refused before they are read.
    max_recipients_file_mb: int = Field(50, ge=1, le=2048)

    # Connections. The URLs may hold passwords: kept as secrets, shown as '**********' in a
    # repr or a log line; read them with ``sqlalchemy_url`` and ``redis_connection_url``.
    database_url: SecretStr = SecretStr("postgresql+psycopg://postgres@127.0.0.1:54329/mailer")
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:63790/0")
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    # Any Temporal cluster: TLS (a private CA, a client certificate for mTLS, the server name
    # the certificate carries) and an API key (Temporal Cloud). MAILER_TEMPORAL_TLS=true
    # turns TLS on with the system's CAs; any of the files, or an API key, turn it on too.
    temporal_tls: bool = False
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_ca: Path | None = None
    temporal_tls_server_name: str = ""
    temporal_api_key: SecretStr = SecretStr("")
    task_queue: str = "mailer"
    temporal_ui_url: str = "http://127.0.0.1:8233"
    smtp_bz_api_url: str = "https://api.smtp.bz/v1"
    smtp_timeout_seconds: float = Field(30.0, gt=0)

    # One-click unsubscribe (RFC 8058): the key signing each message's link, where
    # `mailer web` is reachable from the internet, and an optional mailbox for mailto:
    # unsubscribes. With no secret, messages carry no List-Unsubscribe (the worker warns).
    unsubscribe_secret: SecretStr = SecretStr("")
    unsubscribe_base_url: str = "http://127.0.0.1:8090"
    unsubscribe_mailto: str = ""

    # `mailer doctor` counts a poller not seen this long as gone (a stopped worker stays
    # listed by the server; a live one polls again within about a minute).
    doctor_poller_gone_seconds: int = Field(120, ge=65, le=3600)

    # The envelope sender (MAIL FROM) of campaign messages and test emails, when not the
    # From address: where delivery reports go, e.g. a mailbox routed to the receiver
    # (MAILER_INBOUND_PORT). Empty: the account's From address.
    return_path: str = ""

    # Where `mailer web` (the unsubscribe service) listens.
    web_host: str = "127.0.0.1"
    web_port: int = Field(8090, ge=1, le=65535)
    # `mailer web` also receives mail on this port (0 = off): mailto: unsubscribes, delivery
    # reports (bounces) and feedback-loop complaints routed to it (docs/deploy.md).
    inbound_port: int = Field(0, ge=0, le=65535)
    # The receiver's limits: the largest message (a report quotes the returned message's
    # headers, far below this), and the domains it accepts mail for besides those of
    # MAILER_RETURN_PATH and MAILER_UNSUBSCRIBE_MAILTO (comma-separated).
    inbound_max_message_kb: int = Field(2048, ge=64, le=50 * 1024)
    inbound_domains: str = ""
    # STARTTLS on the receiver (PEM files; both or neither): reports carry tokens.
    inbound_tls_cert: Path | None = None
    inbound_tls_key: Path | None = None
    # Feedback loops whose reports count as complaints (their domains, comma-separated,
    # e.g. "mail.ru,yahoo.com"), what proves a report is theirs — a valid DKIM signature of
    # the domain ("dkim") or only its From ("sender": behind an MTA enforcing DMARC) — and
    # the nameservers DKIM keys are looked up on ("10.0.0.2,127.0.0.1:5353"; empty: the
    # system's resolver). Other reports are kept as unverified complaints.
    feedback_loops: str = ""
    feedback_loop_check: Literal["dkim", "sender"] = "dkim"
    dkim_nameservers: str = ""

    # The calendar: the weekdays that send ("mon-sun", the seed's, or "mon-fri"), a country's
    # public holidays and transferred working days from the `holidays` package ("RU"), and a
    # file of extra dates ("YYYY-MM-DD" off, "YYYY-MM-DD working" on).
    working_days: str = "mon-sun"
    holidays: str = ""
    holidays_file: Path | None = None
    # Each recipient's working hours in their own zone (the recipients CSV's `timezone`
    # column; none: MAILER_TIMEZONE). Off: the seed's one zone for everyone.
    recipient_timezones: bool = False

    # Worker Deployments (docs/deploy.md, "Upgrading"): with a build id (the image sets it),
    # the worker polls as version DEPLOYMENT_NAME/BUILD_ID; a new build makes itself current
    # once ("new") or waits for the operator ("never"). Empty build id: unversioned.
    deployment_name: str = Field("mailer", min_length=1, max_length=200)
    build_id: str = Field("", max_length=200)
    deployment_takeover: Literal["new", "never"] = "new"

    # The worker's health endpoint (/livez, /readyz: ready once it polls the task queue);
    # 0 turns it off. Bound on MAILER_METRICS_HOST.
    health_port: int = Field(0, ge=0, le=65535)

    # The worker's Prometheus endpoint (/metrics): the SDK's temporal_* metrics and
    # mailer's own. 0 turns it off; 0.0.0.0 listens on every interface (containers).
    metrics_port: int = Field(0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # The worker's and `mailer simulate`'s event loop (mailer.core.event_loop): uvloop, or
    # asyncio's own, the way back should a library misbehave on uvloop.
    event_loop: EventLoopKind = "uvloop"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if not url.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
            raise ValueError("expected a postgresql:// URL")
        return value

    @field_validator("return_path", "unsubscribe_mailto")
    @classmethod
    def _ascii_address(cls, value: str) -> str:
        value = value.strip()
        if value and not re.fullmatch(r"[!-~]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+", value):
            raise ValueError("expected an ASCII mailbox like bounces@mail.example.ru")
        return value

    @field_validator("unsubscribe_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("expected an https:// URL (where `mailer web` is reachable)")
        return value.rstrip("/")

    @field_validator(
        "working_days", "dkim_nameservers", "domain_rate_per_minute", "recipient_retry_minutes"
    )
    @classmethod
    def _parses(cls, value: str, info: ValidationInfo) -> str:
        """Kept as written once its parser accepts it (a ValueError names the bad part)."""
        _PARSERS[info.field_name or ""](value)
        return value

    @field_validator("holidays")
    @classmethod
    def _holidays_country(cls, value: str) -> str:
        return country_code(value)

    @field_validator("holidays_file")
    @classmethod
    def _holidays_file(cls, value: Path | None) -> Path | None:
        if value is None or str(value) in ("", "."):
            return None
        read_dates_file(value)  # a ValueError names file:line
        return value

    @field_validator(
        "temporal_tls_cert",
        "temporal_tls_key",
        "temporal_tls_ca",
        "inbound_tls_cert",
        "inbound_tls_key",
    )
    @classmethod
    def _pem_file(cls, value: Path | None) -> Path | None:
        if value is None or str(value) in ("", "."):  # an empty variable: not set
            return None
        try:
            text = value.read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            raise ValueError(f"cannot read {value}: {exc.strerror or exc}") from None
        if "-----BEGIN " not in text:
            raise ValueError(f"{value} is not a PEM file")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected a redis:// URL")
        return value

    @model_validator(mode="after")
    def _certificates_complete(self) -> Settings:
        for prefix, kind, cert, key in (
            ("MAILER_TEMPORAL_TLS", "client", self.temporal_tls_cert, self.temporal_tls_key),
            ("MAILER_INBOUND_TLS", "server", self.inbound_tls_cert, self.inbound_tls_key),
        ):
            if (cert is None) != (key is None):
                given, missing = (
                    (f"{prefix}_CERT", f"{prefix}_KEY")
                    if key is None
                    else (f"{prefix}_KEY", f"{prefix}_CERT")
                )
                raise ValueError(
                    f"{missing}: required with {given} (a {kind} certificate and its key)"
                )
        return self

    @model_validator(mode="after")
    def _working_hours_in_order(self) -> Settings:
        if self.working_hours_start >= self.working_hours_end:
            raise ValueError(
                f"MAILER_WORKING_HOURS_START ({self.working_hours_start}) must be before "
                f"MAILER_WORKING_HOURS_END ({self.working_hours_end})"
            )
        return self

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the psycopg 3 driver SQLAlchemy needs."""
        url = _revealed(self.database_url)
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url.removeprefix(prefix)
        return url

    @property
    def redis_connection_url(self) -> str:
        return _revealed(self.redis_url)

    @property
    def domain_pacing(self) -> DomainPacing:
        return parse_domain_rates(self.domain_rate_per_minute)

    @property
    def recipient_retry_schedule(self) -> tuple[float, ...]:
        return _parse_schedule(self.recipient_retry_minutes)

    @property
    def unsubscribe_key(self) -> str:
        return _revealed(self.unsubscribe_secret)


def _parse_schedule(value: str) -> tuple[float, ...]:
    """``"5,15,30,60"`` as minutes, each positive."""
    steps: list[float] = []
    for part in value.split(","):
        try:
            minutes = float(part.strip())
        except ValueError:
            raise ValueError(
                f"{part.strip()!r} is not a number of minutes, e.g. 5,15,30,60"
            ) from None
        if not 0 < minutes <= 24 * 60:
            raise ValueError(f"{part.strip()!r}: each step must be over 0 and at most 1440 minutes")
        steps.append(minutes)
    return tuple(steps)


def _revealed(value: SecretStr | str) -> str:
    """A secret's value (``model_copy(update=…)`` may have put a plain string there)."""
    return value.get_secret_value() if isinstance(value, SecretStr) else value


_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@]*):[^@/]*@")


def without_password(text: str) -> str:
    """``text`` with any URL's password replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\g<scheme>\g<user>:***@", text)


def describe_validation_error(error: ValidationError) -> str:
    """One line per wrong variable, each naming the variable as the operator typed it."""
    lines = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        if field:
            given = problem.get("input")
            if isinstance(given, str):
                given = without_password(given)
            shown = f" (got {given!r})" if isinstance(given, str | int | float) else ""
            lines.append(f"{ENV_PREFIX}{field.upper()}: {message}{shown}")
        else:
            lines.append(message)
    return "\n".join(lines)


def project_root(start: Path) -> Path:
    """The nearest directory at or above ``start`` holding the stack's ``.data/mailer.env``
    (so ``mailer`` works from anywhere inside the checkout); ``start`` if there is none."""
    for directory in (start, *start.parents):
        if (directory / DEFAULT_ENV_FILES[0]).is_file():
            return directory
    return start


def env_files() -> tuple[str, ...]:
    """The env files read, later ones winning: the stack's, the project's ``.env``, then the
    running embedded worker's overrides."""
    chosen = os.environ.get(ENV_FILES_VARIABLE)
    if chosen is None:
        root = project_root(Path.cwd())
        return tuple(str(root / name) for name in DEFAULT_ENV_FILES)
    return tuple(part.strip() for part in chosen.split(",") if part.strip())


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning a validation failure into a :class:`ConfigError`."""
    try:
        return Settings(_env_file=env_files() or None, **overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return load_settings()


def nameserver_addresses(text: str) -> list[tuple[str, int]]:
    """``MAILER_DKIM_NAMESERVERS``: ``"10.0.0.2, 127.0.0.1:5353"`` → (IP, port) pairs (53 by
    default). Raises ValueError naming the bad entry."""
    found = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        host, _, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "53")
        try:
            ipaddress.ip_address(host)
            number = int(port)
        except ValueError:
            number = 0
        if not 0 < number < 65536:
            raise ValueError(f"expected IP[:PORT] entries, got {entry!r}")
        found.append((host, number))
    return found


# The settings held as text and checked by parsing (Settings._parses).
_PARSERS: dict[str, Callable[[str], object]] = {
    "working_days": parse_working_days,
    "dkim_nameservers": nameserver_addresses,
    "domain_rate_per_minute": parse_domain_rates,
    "recipient_retry_minutes": _parse_schedule,
}

"""Users and the global mail account (the ``mailer_globalmailaccount`` singleton)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from db.models import GlobalMailAccount, SmtpTls, User
from db.queries import get_account
from mailer.core.errors import InputError
from mailer.mail.tls import BadCertificate, tls_context
from mailer.operations.authoring.create import header_problems, sender_problems

SECRET_FIELDS = frozenset({"smtp_password", "smtp_bz_api_key"})


def add_user(session: Session, username: str, email: str = "") -> User:
    """Create a user; a taken or empty username is an :class:`InputError`."""
    username = username.strip()
    if not username:
        raise InputError(["USERNAME: empty"])
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise InputError([f"USERNAME: user {username!r} already exists"])
    foreign = _columns_mailer_cannot_fill(session)
    if foreign:
        raise InputError(
            [
                "users belong to the CRM here: accounts_user requires "
                f"{', '.join(foreign)}, which mailer does not set; add the user in the CRM"
            ]
        )
    user = User(username=username, email=email)
    session.add(user)
    session.flush()
    return user


def _columns_mailer_cannot_fill(session: Session) -> list[str]:
    """Required columns of ``accounts_user`` that mailer's user model does not know (a
    Django user table: password, is_superuser, …), in table order."""
    known = set(User.__table__.columns.keys())
    columns = inspect(session.connection()).get_columns("accounts_user")
    return [
        str(column["name"])
        for column in columns
        if not column["nullable"]
        and column.get("default") is None
        and not column.get("autoincrement")
        and column["name"] not in known
    ]


@dataclass(frozen=True)
class AccountChanges:
    """Fields to change on the account; ``None`` leaves a field as it is."""

    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_tls: str | None = None
    from_email: str | None = None
    from_name: str | None = None
    per_user_daily_limit: int | None = None
    smtp_bz_api_key: str | None = None
    smtp_ca_pem: str | None = None  # '' goes back to the system's CAs
    smtp_verify_tls: bool | None = None

    def problems(self) -> list[str]:
        found: list[str] = []
        if self.smtp_ca_pem:
            try:
                tls_context(self.smtp_ca_pem, True)
            except BadCertificate as exc:
                found.append(f"--smtp-ca-file: {exc}")
        if self.smtp_port is not None and not 0 < self.smtp_port < 65536:
            found.append(f"--smtp-port: {self.smtp_port} is not a TCP port (1-65535)")
        if self.smtp_tls is not None and self.smtp_tls not in {t.value for t in SmtpTls}:
            found.append(f"--smtp-tls: {self.smtp_tls!r} is not one of none, starttls, tls")
        if self.per_user_daily_limit is not None and self.per_user_daily_limit < 0:
            found.append("--daily-limit: must be 0 (no limit) or more")
        if self.from_email:
            found += sender_problems("--from-email", self.from_email)
        if self.from_name is not None:
            found += header_problems("--from-name", self.from_name, required=False)
        if self.smtp_host is not None and not self.smtp_host.strip():
            found.append("--smtp-host: empty")
        return found


def set_account(session: Session, changes: AccountChanges) -> GlobalMailAccount:
    """Create or update the singleton account; invalid changes write nothing."""
    problems = changes.problems()
    if problems:
        raise InputError(problems)
    account = get_account(session)
    if account is None:
        account = GlobalMailAccount()
        session.add(account)
    for item in fields(changes):
        value = getattr(changes, item.name)
        if value is not None:
            setattr(account, item.name, value)
    session.flush()
    return account


def mask(value: str) -> str:
    """A secret shown as set/unset, never its value."""
    return "********" if value else "(not set)"


def describe_account(account: GlobalMailAccount) -> dict[str, object]:
    """The account as shown to operators, secrets masked."""
    shown: dict[str, object] = {}
    for name in (
        "smtp_host",
        "smtp_port",
        "smtp_username",
        "smtp_password",
        "smtp_tls",
        "from_email",
        "from_name",
        "per_user_daily_limit",
        "smtp_bz_api_key",
        "smtp_verify_tls",
    ):
        value = getattr(account, name)
        shown[name] = mask(value) if name in SECRET_FIELDS else value
    pem = account.smtp_ca_pem
    shown["smtp_ca"] = f"private CA ({len(pem)} bytes of PEM)" if pem else "the system's CAs"
    return shown

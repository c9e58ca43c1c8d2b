"""``mailer account``: the global SMTP account and its limits."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from db.queries import get_account
from mailer.cli.support import db_session, fail, print_fields, reports_errors, warn
from mailer.core.errors import InputError
from mailer.operations.accounts import AccountChanges, describe_account, set_account

app = typer.Typer(help="The global SMTP account and its limits.", no_args_is_help=True)


Text = Annotated[str | None, typer.Option()]
SECRET_HELP = "Visible in the process list and shell history: prefer the next."
Secret = Annotated[str | None, typer.Option(help=SECRET_HELP)]
PasswordStdin = Annotated[
    bool, typer.Option("--smtp-password-stdin", help="Read the SMTP password from stdin.")
]
ApiKeyStdin = Annotated[
    bool, typer.Option("--smtp-bz-api-key-stdin", help="Read the smtp.bz API key from stdin.")
]
Port = Annotated[int | None, typer.Option()]
Tls = Annotated[str | None, typer.Option(help="none, starttls or tls")]
DailyLimit = Annotated[int | None, typer.Option(help="Emails per user per day; 0 = no limit.")]
CaFile = Annotated[
    Path | None,
    typer.Option(help="PEM file of a private CA the server's certificate is checked against."),
]
VerifyTls = Annotated[
    bool | None,
    typer.Option(
        "--smtp-verify-tls/--smtp-no-verify-tls",
        help="Check the server's certificate (default). Turn off for test relays only.",
    ),
]


@app.command("set")
@reports_errors
def account_set(
    smtp_host: Text = None,
    smtp_port: Port = None,
    smtp_username: Text = None,
    smtp_password: Secret = None,
    smtp_password_stdin: PasswordStdin = False,
    smtp_tls: Tls = None,
    from_email: Text = None,
    from_name: Text = None,
    daily_limit: DailyLimit = None,
    smtp_bz_api_key: Secret = None,
    smtp_bz_api_key_stdin: ApiKeyStdin = False,
    smtp_ca_file: CaFile = None,
    smtp_verify_tls: VerifyTls = None,
) -> None:
    """Create or change the global mail account (only the options given change).

    Secrets are best given on stdin (one line each, the password first):
    ``printf '%s\\n' "$PASS" | mailer account set --smtp-password-stdin``.
    """
    if smtp_password is not None or smtp_bz_api_key is not None:
        warn("a secret given as an argument is visible to other users: use --…-stdin")
    if smtp_password_stdin:
        smtp_password = _secret_line("--smtp-password-stdin")
    if smtp_bz_api_key_stdin:
        smtp_bz_api_key = _secret_line("--smtp-bz-api-key-stdin")
    changes = AccountChanges(
        smtp_host=smtp_host,
        smtp_port=smtp_port,
        smtp_username=smtp_username,
        smtp_password=smtp_password,
        smtp_tls=smtp_tls,
        from_email=from_email,
        from_name=from_name,
        per_user_daily_limit=daily_limit,
        smtp_bz_api_key=smtp_bz_api_key,
        smtp_ca_pem=_read_ca(smtp_ca_file),
        smtp_verify_tls=smtp_verify_tls,
    )
    with db_session() as session:
        shown = describe_account(set_account(session, changes))
    if smtp_verify_tls is False:
        warn("the SMTP server's TLS certificate will NOT be verified: for test relays only")
    print_fields(shown)


def _secret_line(option: str) -> str:
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise InputError([f"{option}: nothing on stdin"])
    return line


def _read_ca(path: Path | None) -> str | None:
    """The CA file's PEM text (stored in the account, so every worker has it)."""
    if path is None:
        return None
    if str(path) == "":
        return ""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError([f"--smtp-ca-file: {path}: cannot read: {exc}"]) from None


@app.command("show")
@reports_errors
def account_show() -> None:
    """Show the global mail account, secrets masked."""
    with db_session() as session:
        account = get_account(session)
        if account is None:
            raise fail("no account yet: create it with `mailer account set …`", 1)
        shown = describe_account(account)
    print_fields(shown)

"""The operator CLI's authoring commands against a real, migrated PostgreSQL database."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import trustme
from sqlalchemy import Engine, text

from mailer.core import settings as settings_module
from mailer.stack.servers import free_port
from starter import app
from tests.support.authoring import create_args, run, runner

TABLES = (
    "accounts_user",
    "mailer_campaign",
    "mailer_campaignqueue",
    "mailer_campaignrecipient",
    "mailer_sendlog",
    "mailer_smtpbzquota",
    "mailer_globalmailaccount",
)


def snapshot(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.scalar(text(f"SELECT count(*) FROM {t}")) or 0 for t in TABLES}


def test_user_add_prints_the_id(mailer_env: dict[str, str], engine: Engine) -> None:
    first = run("user", "add", "anna")
    second = run("user", "add", "boris")
    assert int(second.stdout) == int(first.stdout) + 1
    duplicate = run("user", "add", "anna")
    assert duplicate.exit_code == 2
    assert duplicate.stderr.strip() == "error: USERNAME: user 'anna' already exists"


def test_account_set_and_show_mask_secrets(mailer_env: dict[str, str], engine: Engine) -> None:
    result = run(
        "account",
        "set",
        "--smtp-host",
        "smtp.example.com",
        "--smtp-password",
        "s3cret",
        "--smtp-bz-api-key",
        "key-123",
        "--daily-limit",
        "250",
        "--from-email",
        "news@example.com",
    )
    assert result.exit_code == 0, result.output
    shown = run("account", "show").stdout
    assert "smtp.example.com" in shown and "250" in shown
    assert "s3cret" not in shown and "key-123" not in shown
    assert "********" in shown
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT smtp_password, per_user_daily_limit FROM mailer_globalmailaccount")
        ).one()
    assert tuple(row) == ("s3cret", 250)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--smtp-tls", "ssl"], "error: --smtp-tls: 'ssl' is not one of none, starttls, tls"),
        (["--smtp-port", "70000"], "error: --smtp-port: 70000 is not a TCP port (1-65535)"),
        (["--from-name", "A\r\nBcc: x@y"], "error: --from-name: contains a line break"),
        (["--daily-limit", "-5"], "error: --daily-limit: must be 0 (no limit) or more"),
    ],
)
def test_account_set_rejects_bad_values(
    mailer_env: dict[str, str], engine: Engine, args: list[str], message: str
) -> None:
    before = snapshot(engine)
    result = run("account", "set", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert snapshot(engine) == before


def test_create_writes_campaign_and_recipients(
    user: str, files: dict[str, Path], engine: Engine
) -> None:
    result = run(*create_args(files), "--json")
    assert result.exit_code == 0, result.output
    campaign_id = uuid.UUID(json.loads(result.stdout)["campaign_id"])
    with engine.connect() as conn:
        campaign = conn.execute(
            text("SELECT status, total_recipients, subject FROM mailer_campaign WHERE id = :id"),
            {"id": campaign_id},
        ).one()
        recipients = conn.execute(
            text(
                "SELECT email, name, status, variables FROM mailer_campaignrecipient "
                "WHERE campaign_id = :id ORDER BY id"
            ),
            {"id": campaign_id},
        ).all()
    assert tuple(campaign) == ("ready", 2, "{{ name }}, new tariffs")
    assert [tuple(r)[:3] for r in recipients] == [
        ("anna@example.com", "Анна", "pending"),
        ("ivan@example.com", "Иван", "pending"),
    ]
    assert recipients[0].variables == {"name": "Анна"}

    status = run("status", str(campaign_id), "--json")
    view = json.loads(status.stdout)
    assert (view["status"], view["pending"], view["sent"], view["queue_status"]) == (
        "ready",
        2,
        0,
        None,
    )


def test_create_prints_plain_uuid_and_warns_about_merges(
    user: str, files: dict[str, Path], engine: Engine
) -> None:
    files["csv"].write_text("email\nAnna@example.com\nanna@EXAMPLE.com\nbad\n")
    result = run(
        *create_args(files, **{"--subject": "Hello"}, **{"--html": None}, **{"--text": None}),
        "--text",
        str(files["dir"] / "plain.txt"),
        "--skip-invalid",
    )
    assert result.exit_code == 2  # plain.txt does not exist yet
    (files["dir"] / "plain.txt").write_text("Hello {{ email }}\n")
    result = run(
        *create_args(files, **{"--subject": "Hello"}, **{"--html": None}, **{"--text": None}),
        "--text",
        str(files["dir"] / "plain.txt"),
        "--skip-invalid",
    )
    assert result.exit_code == 0, result.output
    uuid.UUID(result.stdout.strip())
    assert "duplicates line 2; merged" in result.stderr
    assert "skipped 1 invalid addresses" in result.stderr
    assert snapshot(engine)["mailer_campaignrecipient"] == 1


def _bad_inputs(files: dict[str, Path]) -> list[tuple[list[str], list[str]]]:
    d = files["dir"]
    (d / "cp1251.csv").write_bytes("email,name\na@example.com,Привет\n".encode("cp1251"))
    (d / "noemail.csv").write_text("mail,name\na@example.com,A\n")
    (d / "empty.csv").write_text("email,name\n")
    (d / "invalid.csv").write_text("email,name\nok@example.com,A\nnope@,B\n@x.com,C\n")
    (d / "toomany.csv").write_text("email\n" + "".join(f"u{i}@example.com\n" for i in range(4)))
    (d / "syntax.html").write_text("<p>\n{% if name %}oops\n</p>\n")
    (d / "unknown.txt").write_text("Hi {{ first_name }}\n")
    return [
        (
            create_args(files, **{"--recipients": str(d / "missing.csv")}),
            [f"{d / 'missing.csv'}: no such file"],
        ),
        (
            create_args(files, **{"--recipients": str(d / "cp1251.csv")}),
            [
                f"{d / 'cp1251.csv'}:2: not valid utf-8 (byte 0xcf); it decodes as cp1251: try --encoding cp1251"
            ],
        ),
        (
            create_args(files, **{"--recipients": str(d / "noemail.csv")}),
            [f"{d / 'noemail.csv'}:1: no 'email' column in the header (found 'mail', 'name')"],
        ),
        (
            create_args(files, **{"--recipients": str(d / "empty.csv")}),
            [f"{d / 'empty.csv'}: no recipients: the file has a header row but no data rows"],
        ),
        (
            create_args(files, **{"--recipients": str(d / "invalid.csv")}),
            [
                f"{d / 'invalid.csv'}:3: email: 'nope@' is not a valid address: There must be something after the @-sign.",
                f"{d / 'invalid.csv'}:4: email: '@x.com' is not a valid address: There must be something before the @-sign.",
            ],
        ),
        (
            create_args(
                files,
                **{
                    "--recipients": str(d / "toomany.csv"),
                    "--subject": "Hi",
                    "--html": None,
                    "--text": str(d / "unknown.txt"),
                },
            ),
            [
                f"{d / 'toomany.csv'}: 4 recipients after merging duplicates, more than MAILER_MAX_CAMPAIGN_RECIPIENTS=3",
                f"{d / 'unknown.txt'}:1: unknown variable 'first_name' (the CSV has: email)",
            ],
        ),
        (create_args(files, **{"--subject": "  "}), ["--subject: empty"]),
        (
            create_args(files, **{"--subject": "Hi\r\nBcc: all@example.com"}),
            ["--subject: contains a line break (CR/LF), which is not allowed in a header"],
        ),
        (
            [*create_args(files), "--from-name", "Shop\nX-Evil: 1"],
            ["--from-name: contains a line break (CR/LF), which is not allowed in a header"],
        ),
        (
            create_args(files, **{"--html": str(d / "syntax.html")}),
            [
                f"{d / 'syntax.html'}:2: template syntax error: Unexpected end of template. Jinja was looking for the following tags: 'elif' or 'else' or 'endif'. The innermost block that needs to be closed is 'if'."
            ],
        ),
        (
            create_args(files, **{"--subject": "{{ nmae }}: news"}),
            ["--subject: unknown variable 'nmae' (the CSV has: email, name)"],
        ),
        (
            create_args(files, **{"--created-by": "ghost"}),
            ["--created-by: no user 'ghost' (add one with: mailer user add NAME)"],
        ),
        (
            create_args(files, **{"--html": None, "--text": None}),
            ["no body: give --html FILE, --text FILE, or both"],
        ),
    ]


def test_bad_inputs_write_nothing_and_name_the_problem(
    user: str, files: dict[str, Path], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILER_MAX_CAMPAIGN_RECIPIENTS", "3")
    settings_module.get_settings.cache_clear()
    before = snapshot(engine)
    for args, expected in _bad_inputs(files):
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.splitlines() == [f"error: {line}" for line in expected], args
        assert snapshot(engine) == before, args


def test_status_of_unknown_or_malformed_campaign(
    mailer_env: dict[str, str], engine: Engine
) -> None:
    missing = run("status", str(uuid.uuid4()))
    assert missing.exit_code == 1 and "no campaign" in missing.stderr
    malformed = run("status", "not-a-uuid")
    assert malformed.exit_code == 2
    assert malformed.stderr.strip() == "error: CAMPAIGN_ID: 'not-a-uuid' is not a campaign UUID"


def test_database_down_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILER_DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    settings_module.get_settings.cache_clear()
    result = run("user", "add", "x")
    settings_module.get_settings.cache_clear()
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot reach the database (")
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_setting_fails_with_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILER_RATE_PER_HOUR", "abc")
    settings_module.get_settings.cache_clear()
    result = run("status", str(uuid.uuid4()))
    settings_module.get_settings.cache_clear()
    assert result.exit_code == 2
    assert result.stderr.startswith("error: MAILER_RATE_PER_HOUR: Input should be a valid integer")


def test_create_builds_every_message_as_sending_would(
    user: str, files: dict[str, Path], engine: Engine
) -> None:
    """Templates that pass the syntax check but fail for some recipients, and CSV values
    with a line break that would land in a header, are refused at create."""
    d = files["dir"]
    rows = ["email,name,topic"] + [f"ok{i}@example.com,Ok {i},news" for i in range(5)]
    rows += [f'"cr{i}@example.com",Cr {i},"line\nbreak {i}"' for i in range(22)]
    (d / "crlf.csv").write_text("\n".join(rows) + "\n")
    before = snapshot(engine)
    result = run(
        *create_args(files, **{"--recipients": str(d / "crlf.csv"), "--subject": "{{ topic }}"})
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 21  # twenty listed, then a count
    assert lines[0] == (
        f"error: {d / 'crlf.csv'}:7: cannot build the message: "
        "the Subject header would contain a line break"
    )
    assert lines[-1] == (
        f"error: {d / 'crlf.csv'}: … and 2 more unsendable recipients "
        "(22 in all; --skip-invalid drops them)"
    )
    assert snapshot(engine) == before

    skipped = run(
        *create_args(files, **{"--recipients": str(d / "crlf.csv"), "--subject": "{{ topic }}"}),
        "--skip-invalid",
    )
    assert skipped.exit_code == 0, skipped.output
    assert "skipped 22 invalid addresses" in skipped.stderr
    assert snapshot(engine)["mailer_campaignrecipient"] == 5


def test_templates_that_fail_at_render_are_refused_at_create(
    user: str, files: dict[str, Path], engine: Engine
) -> None:
    body = files["dir"] / "evil.txt"
    body.write_text("{{ name.__class__.__mro__ }}\n")
    before = snapshot(engine)
    result = run(*create_args(files, **{"--html": None, "--text": str(body)}))
    assert result.exit_code == 2, result.output
    assert (
        f"{files['csv']}:2: cannot build the message: cannot render the templates" in result.stderr
    )
    assert "access to attribute '__class__'" in result.stderr
    assert snapshot(engine) == before


def test_a_recipients_file_over_the_size_limit_is_refused_before_reading(
    user: str, files: dict[str, Path], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILER_MAX_RECIPIENTS_FILE_MB", "1")
    settings_module.get_settings.cache_clear()
    big = files["dir"] / "big.csv"
    big.write_text("email\n" + "x" * (1024 * 1024 + 512 * 1024) + "\n")
    result = run(*create_args(files, **{"--recipients": str(big)}))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {big}: 1.5 MB, more than the 1 MB allowed (MAILER_MAX_RECIPIENTS_FILE_MB)"
    )


def test_senders_must_be_sendable_anywhere(
    user: str, files: dict[str, Path], engine: Engine
) -> None:
    refused = run("account", "set", "--from-email", "почта@магазин.рф")
    assert refused.exit_code == 2
    assert "has a non-ASCII part before the @" in refused.stderr
    created = run(*create_args(files), "--from-email", "josé@example.com")
    assert created.exit_code == 2 and "has a non-ASCII part before the @" in created.stderr
    idn = run("account", "set", "--from-email", "news@магазин.рф", "--smtp-host", "127.0.0.1")
    assert idn.exit_code == 0, idn.output  # an IDN domain is fine: sent as its A-label


def test_account_takes_a_private_ca_and_refuses_a_bad_one(
    mailer_env: dict[str, str], tmp_path: Path, engine: Engine
) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    refused = run("account", "set", "--smtp-ca-file", str(bad))
    assert refused.exit_code == 2
    assert refused.stderr.startswith("error: --smtp-ca-file: not a PEM CA certificate")
    assert snapshot(engine)["mailer_globalmailaccount"] == 0
    good = tmp_path / "ca.pem"
    good.write_bytes(trustme.CA().cert_pem.bytes())
    assert run("account", "set", "--smtp-ca-file", str(good)).exit_code == 0
    shown = run("account", "show").stdout
    assert "private CA" in shown and "BEGIN CERTIFICATE" not in shown
    unverified = run("account", "set", "--smtp-no-verify-tls")
    assert unverified.exit_code == 0 and "will NOT be verified" in unverified.stderr


def test_account_secrets_come_from_stdin(mailer_env: dict[str, str], engine: Engine) -> None:
    result = runner.invoke(
        app,
        ["account", "set", "--smtp-password-stdin", "--smtp-bz-api-key-stdin"],
        input="pa ss\nkey-123\n",
    )
    assert result.exit_code == 0, result.output
    assert "pa ss" not in result.output and "key-123" not in result.output
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT smtp_password, smtp_bz_api_key FROM mailer_globalmailaccount")
        ).one()
    assert tuple(row) == ("pa ss", "key-123")
    empty = runner.invoke(app, ["account", "set", "--smtp-password-stdin"], input="")
    assert empty.exit_code == 2 and "--smtp-password-stdin: nothing on stdin" in empty.stderr

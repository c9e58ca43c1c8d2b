"""What a CRM user types and what strangers send, as the CLI reads and prints it: Rich
markup and terminal escapes in names and notes, over-long values, CSV formulas, quadratic
headers, and templates that never finish (a real migrated database, typer's runner)."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests.cli.test_authoring import snapshot
from tests.support.authoring import create_args, run

HOSTILE = "[/x] [bold]loud[/bold] \x1b[2J\x1b]0;owned\x07 \x9b31m"


def created(files: dict[str, Path], **overrides: str | None) -> str:
    result = run(*create_args(files, **overrides))
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_names_and_notes_are_printed_as_text_never_as_markup_or_escapes(
    user: str, files: dict[str, Path], engine: Engine
) -> None:
    campaign = created(files, **{"--name": HOSTILE})
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO mailer_suppression (address, reason, note, created_at) "
                "VALUES ('x@example.com', 'complaint', :note, now())"
            ),
            {"note": "feedback-type: abuse " + HOSTILE},
        )
    for args in (["list"], ["list", "--all"], ["status", campaign], ["suppress", "list"]):
        result = run(*args)
        assert result.exit_code == 0, (args, result.output)
        assert "[/x] [bold]loud[/bold]" in result.stdout, args  # shown, not interpreted
        assert "\x1b" not in result.stdout and "\x9b" not in result.stdout, args
        assert "\\x1b[2J" in result.stdout, args  # visible, harmless


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--name", "n" * 300, "--name: 300 characters, at most 255"),
        ("--subject", "s" * 1200, "--subject: 1,200 characters, at most 998"),
        ("--subject", "Hi\x0bthere", "--subject: contains the control character \\x0b"),
        ("--from-name", "f" * 256, "--from-name: 256 characters, at most 255"),
    ],
)
def test_over_long_or_control_values_are_one_line_naming_the_field(
    user: str, files: dict[str, Path], engine: Engine, option: str, value: str, expected: str
) -> None:
    before = snapshot(engine)
    result = run(*create_args(files, **{option: value}))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {expected}")
    assert "Traceback" not in result.output and "DataError" not in result.output
    assert snapshot(engine) == before


def test_csv_values_are_bounded_and_formulas_refused(
    user: str, files: dict[str, Path], engine: Engine
) -> None:
    path = files["dir"] / "hostile.csv"
    path.write_text(
        "email,name,city\n"
        f"ok@example.com,{'n' * 120_000},Moscow\n"
        "=cmd|calc!a0@example.com,Eve,Paris\n"
        "+1-1@example.com,Eve,Paris\n"
        "tab@example.com,Eve\x0bEve,Paris\n"
    )
    before = snapshot(engine)
    result = run(*create_args(files, **{"--recipients": str(path)}))
    assert result.exit_code == 2, result.output
    errors = result.stderr
    assert f"{path}:2: name: 120,000 characters, at most 255" in errors
    assert f"{path}:3: email: " in errors and "run it as a formula" in errors
    assert f"{path}:4: email: '+1-1@example.com' starts with '+'" in errors
    assert f"{path}:5: name: contains the control character \\x0b" in errors
    assert snapshot(engine) == before


def test_a_header_of_100000_columns_is_refused_at_once(
    user: str, files: dict[str, Path], engine: Engine
) -> None:
    path = files["dir"] / "wide.csv"
    path.write_text("email," + ",".join(f"c{i}" for i in range(100_000)) + "\nok@example.com\n")
    started = time.process_time()
    result = run(*create_args(files, **{"--recipients": str(path)}))
    cpu = time.process_time() - started
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {path}:1: 100,001 columns in the header, at most 200"
    assert cpu < 2.0  # was over 60 s (a quadratic duplicate check)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ 'x'*2*10**9 }}", "repeating a value to 2,000,000,000 items"),
        ("{{ 'x'*10**8 }}", "repeating a value to 100,000,000 items"),
        ("{{ 9**(9**9) }}", "an exponent over 64"),
        ("{% for i in range(10**9) %}x{% endfor %}", "a number over 100,000 passed to a call"),
        ("{{ 'x'|center(10**9) }}", "a number over 100,000 passed to a filter"),
    ],
)
def test_templates_over_the_budget_are_one_line(
    user: str, files: dict[str, Path], engine: Engine, template: str, expected: str
) -> None:
    body = files["dir"] / "greedy.txt"
    body.write_text(template + "\n")
    before = snapshot(engine)
    result = run(*create_args(files, **{"--html": None, "--text": str(body)}))
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [f"error: templates: over the budget: {expected}"] or (
        expected in result.stderr and len(result.stderr.splitlines()) == 1
    )
    assert snapshot(engine) == before


def test_lipsum_is_not_offered(user: str, files: dict[str, Path], engine: Engine) -> None:
    body = files["dir"] / "lorem.txt"
    body.write_text("{{ lipsum(1000000) }}\n")
    result = run(*create_args(files, **{"--html": None, "--text": str(body)}))
    assert result.exit_code == 2
    assert "unknown variable 'lipsum'" in result.stderr


def test_a_template_that_spins_stops_within_its_time_budget(
    user: str, files: dict[str, Path], engine: Engine
) -> None:
    body = files["dir"] / "spin.txt"
    body.write_text(
        "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}\n"
    )
    before = snapshot(engine)
    started = time.monotonic()
    result = run(*create_args(files, **{"--html": None, "--text": str(body)}))
    assert time.monotonic() - started < 20  # hung past 30 s before
    assert result.exit_code == 2
    assert "templates: building the messages takes too long" in result.stderr
    assert snapshot(engine) == before


def test_export_cells_that_a_spreadsheet_would_run_are_neutralised(
    mailer_env: dict[str, str], engine: Engine
) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO mailer_suppression (address, reason, note, created_at) VALUES "
                "('-2+3@example.com', 'complaint', '=HYPERLINK(\"http://evil.example\")', now())"
            )
        )
    result = run("suppress", "export")
    assert result.exit_code == 0, result.output
    row = next(csv.DictReader(io.StringIO(result.stdout)))
    assert row["email"] == "'-2+3@example.com"
    assert row["note"] == '\'=HYPERLINK("http://evil.example")'
    refused = run("suppress", "add", "=cmd|calc!a0@example.com")
    assert refused.exit_code == 2 and "run it as a formula" in refused.stderr

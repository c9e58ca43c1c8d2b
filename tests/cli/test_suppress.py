"""``mailer suppress …`` and ``create`` leaving suppressed addresses out, against a real
migrated database."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from sqlalchemy import Engine, text

from tests.support.authoring import create_args, run


def suppressed(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                text("SELECT address, reason, note FROM mailer_suppression ORDER BY address")
            )
        ]


def test_add_list_remove_export(engine: Engine, mailer_env: dict[str, str], tmp_path: Path) -> None:
    added = run(
        "suppress", "add", "Anna@Example.COM", "ivan@example.com", "--note", "asked by phone"
    )
    assert added.exit_code == 0, added.output
    assert added.output.strip() == "suppressed 2 new address(es) (0 already listed)"
    again = run("suppress", "add", "anna@example.com", "--reason", "complaint")
    assert again.output.strip() == "suppressed 0 new address(es) (1 already listed)"
    assert suppressed(engine) == [
        ("anna@example.com", "manual", "asked by phone"),
        ("ivan@example.com", "manual", "asked by phone"),
    ]
    listed = json.loads(run("suppress", "list", "--json").output)
    assert [row["email"] for row in listed] == ["anna@example.com", "ivan@example.com"]
    exported = tmp_path / "out.csv"
    assert run("suppress", "export", "-o", str(exported)).exit_code == 0
    rows = list(csv.DictReader(io.StringIO(exported.read_text())))
    assert [(r["email"], r["reason"]) for r in rows] == [
        ("anna@example.com", "manual"),
        ("ivan@example.com", "manual"),
    ]
    removed = run("suppress", "remove", "IVAN@example.com")
    assert removed.output.strip() == "removed 1 address(es) (0 were not listed)"
    assert [row[0] for row in suppressed(engine)] == ["anna@example.com"]


def test_bad_input_is_one_line_and_writes_nothing(
    engine: Engine, mailer_env: dict[str, str], tmp_path: Path
) -> None:
    bad = run("suppress", "add", "ok@example.com", "not-an-address")
    assert bad.exit_code == 2
    assert bad.output.strip().startswith("error: ADDRESS: 'not-an-address' is not a valid address")
    reason = run("suppress", "add", "ok@example.com", "--reason", "angry")
    assert reason.exit_code == 2 and "--reason: 'angry' is not one of unsubscribed" in reason.output
    listing = tmp_path / "list.csv"
    listing.write_text("name,email\nA,a@example.com\nB,broken@\nC,c@example.com\n")
    imported = run("suppress", "import", str(listing))
    assert imported.exit_code == 2
    [line] = imported.output.strip().splitlines()
    assert line.startswith(f"error: {listing}:3: 'broken@' is not a valid address")
    assert suppressed(engine) == []
    listing.write_text("name,email\nA,a@example.com\nC,c@example.com\n")
    ok = run("suppress", "import", str(listing), "--reason", "unsubscribed")
    assert ok.exit_code == 0, ok.output
    assert [row[:2] for row in suppressed(engine)] == [
        ("a@example.com", "unsubscribed"),
        ("c@example.com", "unsubscribed"),
    ]


def test_create_leaves_suppressed_addresses_out_and_says_why(
    engine: Engine,
    user: str,
    files: dict[str, Path],
) -> None:
    assert run("suppress", "add", "IVAN@example.com", "--reason", "unsubscribed").exit_code == 0
    result = run(*create_args(files), "--json")
    assert result.exit_code == 0, result.output
    assert (
        "warning: skipped 1 suppressed addresses (1 unsubscribed; see `mailer suppress list`)"
        in result.stderr
    )
    created = json.loads(result.stdout)
    assert created["recipients"] == 1 and created["skipped_suppressed"] == {"unsubscribed": 1}
    with engine.connect() as conn:
        emails = conn.execute(text("SELECT email FROM mailer_campaignrecipient")).scalars().all()
    assert emails == ["anna@example.com"]

    assert run("suppress", "add", "anna@example.com").exit_code == 0
    nobody = run(*create_args(files))
    assert nobody.exit_code == 2
    assert "every address is on the suppression list (manual 1, unsubscribed 1)" in nobody.output

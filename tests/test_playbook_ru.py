"""docs/playbook.ru.md is true for this system: every SQL block runs on our schema, every
`mailer` and `temporal` command it shows exists with the options it uses."""

from __future__ import annotations

import re
import shlex
import subprocess
from typing import Any

import pytest
import typer
from sqlalchemy import Engine
from typer.testing import CliRunner

from mailer.cli import app
from mailer.stack.binaries import temporal_binary
from tests.support.harness import PROJECT_ROOT
from tests.support.playbook import fill

PLAYBOOK = PROJECT_ROOT / "docs" / "playbook.ru.md"
PLACEHOLDERS = {
    "<campaign_uuid>": "00000000-0000-0000-0000-000000000001",
    "<свой адрес>": "me@example.org",
    "<email>": "someone@example.org",
}


def text() -> str:
    return PLAYBOOK.read_text(encoding="utf-8")


def sql_blocks() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", text(), re.DOTALL)


def commands(program: str) -> list[list[str]]:
    """Every ``program …`` line of the shell blocks and inline code, as argv (placeholders
    filled in, shell substitutions and comments dropped)."""
    lines = [
        line.strip()
        for block in re.findall(r"```bash\n(.*?)```", text(), re.DOTALL)
        for line in block.splitlines()
    ]
    lines += re.findall(r"`([^`\n]+)`", text())
    found = []
    for line in lines:
        if not line.startswith(program + " "):
            continue
        for placeholder, value in PLACEHOLDERS.items():
            line = line.replace(placeholder, value)
        line = re.sub(r"\$\([^)]*\)", "X", line).split(" #")[0]
        argv = shlex.split(line.replace("…", ""))
        if len(argv) > 1:  # "`mailer …`" alone names the program, not a command
            found.append(argv)
    return found


def test_every_sql_block_runs_on_a_migrated_database(
    engine: Engine,
    seeded: dict[str, object],
) -> None:
    blocks = sql_blocks()
    assert len(blocks) >= 15
    for sql in blocks:
        filled = fill(sql, seeded)
        assert not re.search(r"<[a-z_]+>", filled), sql
        with engine.connect() as conn:  # rolled back: each block sees the same data
            conn.exec_driver_sql(filled)
            conn.rollback()


def _resolve(argv: list[str]) -> tuple[list[str], Any]:
    """The subcommand path of ``mailer ARGV`` and the command it names (typer's own click:
    a group has ``commands``)."""
    command: Any = typer.main.get_command(app)
    path = []
    for token in argv:
        if not hasattr(command, "commands") or token not in command.commands:
            break
        command = command.commands[token]
        path.append(token)
    return path, command


def test_every_mailer_command_and_option_exists() -> None:
    shown = commands("mailer")
    assert len(shown) >= 20
    runner = CliRunner()
    checked_help: set[tuple[str, ...]] = set()
    for argv in shown:
        path, command = _resolve(argv[1:])
        assert path and not hasattr(command, "commands"), f"no such command: {argv}"
        known = {opt for param in command.params for opt in param.opts + param.secondary_opts}
        for token in argv[1:]:
            if token.startswith("--"):
                assert token.split("=")[0] in known, f"{' '.join(argv)}: no option {token}"
        if tuple(path) not in checked_help:
            result = runner.invoke(app, [*path, "--help"])
            assert result.exit_code == 0, (path, result.output)
            checked_help.add(tuple(path))
    assert {"doctor", "test-email", "resume", "pause", "status", "list"} <= {
        path[0] for path in checked_help
    }


@pytest.fixture(scope="module")
def temporal_help() -> dict[tuple[str, ...], str]:
    return {}


def test_every_temporal_command_and_option_exists(
    temporal_help: dict[tuple[str, ...], str],
) -> None:
    shown = commands("temporal")
    assert len(shown) >= 8
    for argv in shown:
        # The command's words: everything before its first option (`operator cluster health`).
        words = []
        for token in argv[1:]:
            if token.startswith("-"):
                break
            words.append(token)
        path = tuple(words)
        if path not in temporal_help:
            result = subprocess.run(
                [temporal_binary(), *path, "--help"], capture_output=True, text=True, timeout=30
            )
            assert result.returncode == 0, (argv, result.stderr)
            assert "Available Commands" not in result.stdout, f"{argv}: not a full command"
            temporal_help[path] = result.stdout
        for token in argv[1:]:
            if token.startswith("--"):
                assert token in temporal_help[path], f"{' '.join(argv)}: no option {token}"


def test_alert_anchors_and_new_failure_modes_are_there() -> None:
    anchors = set(re.findall(r'<a id="([\w-]+)"></a>', text()))
    assert {
        "daily-limit",
        "quota-exhausted",
        "rate-per-hour",
        "outside-hours",
        "transient-error",
        "stuck-processing",
        "redis-down",
        "quota-not-syncing",
        "no-worker",
        "workflow-task-failing",
        "schedules",
    } <= anchors
    for link in re.findall(r"\]\(#([\w-]+)\)", text()):
        assert link in anchors, link
    # Celery is named only as what was replaced: none of its commands or tasks remain.
    for gone in ("celery -A", "docker restart celery", ".delay()", "from mailer.tasks"):
        assert gone not in text(), gone

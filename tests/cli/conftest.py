"""Fixtures of the CLI tests: the files a campaign is created from, and its creator."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.authoring import run


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    csv = tmp_path / "recipients.csv"
    csv.write_text("email,name\nanna@example.com,Анна\nivan@example.com,Иван\n")
    html = tmp_path / "body.html"
    html.write_text("<p>Привет, {{ name }}!</p>\n")
    body = tmp_path / "body.txt"
    body.write_text("Привет, {{ name }}!\n")
    return {"csv": csv, "html": html, "text": body, "dir": tmp_path}


@pytest.fixture
def user(mailer_env: dict[str, str]) -> str:
    result = run("user", "add", "olga")
    assert result.exit_code == 0, result.output
    return "olga"

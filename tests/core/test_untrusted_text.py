"""Untrusted text made safe for a terminal and for a spreadsheet."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from rich.table import Table

from mailer.cli.support import UntrustedTextConsole
from mailer.core.cells import formula_problem, spreadsheet_cell
from mailer.core.terminal import printable
from mailer.stack.embedded import write_private


def test_control_characters_are_shown_escaped_and_text_kept() -> None:
    assert printable("a\x1b[2Jb\x07\x9b\x00") == "a\\x1b[2Jb\\x07\\x9b\\x00"
    assert printable("строка\tс табом\nи переводом") == "строка\tс табом\nи переводом"


def test_the_console_prints_markup_and_escapes_as_text_in_tables_too() -> None:
    console = UntrustedTextConsole(record=True, width=200, markup=False)
    table = Table("name")
    table.add_row("[/x] \x1b[31mred")
    console.print("[bold]not bold[/bold]")
    console.print(table)
    shown = console.export_text()
    assert "[bold]not bold[/bold]" in shown and "[/x] \\x1b[31mred" in shown
    assert "\x1b" not in shown


@pytest.mark.parametrize("cell", ["=1+2", "+1", "-2+3@x", "@SUM(A1)", "\t=1", "\r=1"])
def test_would_be_formulas_are_refused_in_and_neutralised_out(cell: str) -> None:
    assert formula_problem(cell) is not None
    assert spreadsheet_cell(cell) == "'" + cell


def test_plain_cells_are_untouched() -> None:
    assert formula_problem("anna@example.com") is None
    assert spreadsheet_cell("anna@example.com") == "anna@example.com"


def test_files_with_secrets_are_written_0600_even_over_an_older_0644(tmp_path: Path) -> None:
    path = tmp_path / "mailer.env"
    path.write_text("old")
    os.chmod(path, 0o644)
    write_private(path, "MAILER_UNSUBSCRIBE_SECRET=s\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "MAILER_UNSUBSCRIBE_SECRET=s\n"

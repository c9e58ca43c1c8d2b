"""CSV cells an operator may open in a spreadsheet (OWASP's "CSV injection").

A cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a TAB or CR before one) is run as
a formula by Excel and LibreOffice: ``=cmd|'/c calc'!a0`` starts a program,
``=HYPERLINK(…)`` sends data away. Addresses that start so are refused where they come in;
every exported cell is neutralised on the way out.
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def formula_problem(value: str) -> str | None:
    """Why ``value`` is refused as a would-be formula, if it is."""
    if value.startswith(FORMULA_STARTS):
        return (
            f"starts with {value[0]!r}: a spreadsheet opening an export would run it as a formula"
        )
    return None


def spreadsheet_cell(value: str) -> str:
    """``value`` as an exported cell: a leading apostrophe keeps a would-be formula text
    (the cell then reads as the value; a CSV reader sees the apostrophe)."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value

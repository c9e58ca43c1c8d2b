"""Read a recipients CSV into validated, de-duplicated recipients.

Every problem is reported as one line naming the file, the line and the field, so an
operator can fix the file in one pass. Nothing here touches the database.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email

from mailer.core.cells import formula_problem
from mailer.core.errors import InputError

EMAIL_COLUMN = "email"
NAME_COLUMN = "name"
MAX_LISTED_INVALID = 20
# Bounds on what a CSV may hold (the name column's length is the seed's).
MAX_COLUMNS = 200
MAX_NAME_CHARS = 255
MAX_VALUE_CHARS = 10_000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def control_character(value: str) -> str | None:
    """The first control character in ``value`` (but TAB, LF, CR), shown as ``\\xNN``."""
    found = _CONTROL.search(value)
    return f"\\x{ord(found.group()):02x}" if found else None


# Russian CRM exports are often Windows-1251; we suggest it when UTF-8 fails and it fits.
FALLBACK_ENCODING = "cp1251"


@dataclass(frozen=True, slots=True)
class Recipient:
    email: str
    name: str
    variables: dict[str, str]
    line: int


@dataclass
class RecipientList:
    """The result of reading a CSV: recipients, problems, and what was merged or skipped.

    ``columns`` (the template variables the CSV provides) is known as soon as the header
    is valid, so templates can be checked even when some rows are not; ``problems`` is
    empty when the list can be used.
    """

    recipients: list[Recipient] = field(default_factory=list)
    columns: list[str] | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped_invalid: int = 0
    merged_duplicates: int = 0


def _codec_name(encoding: str) -> str:
    try:
        codec = codecs.lookup(encoding)
    except LookupError:
        raise InputError([f"--encoding: unknown encoding {encoding!r}"]) from None
    # A UTF-8 BOM (Excel adds one) is not part of the data.
    return "utf-8-sig" if codec.name == "utf-8" else codec.name


def _decode(path: Path, data: bytes, encoding: str) -> str:
    name = _codec_name(encoding)
    codec = codecs.lookup(encoding)
    try:
        return data.decode(name)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        hint = ""
        if codec.name != FALLBACK_ENCODING:
            try:
                data.decode(FALLBACK_ENCODING)
                hint = f"; it decodes as {FALLBACK_ENCODING}: try --encoding {FALLBACK_ENCODING}"
            except UnicodeDecodeError:
                pass
        byte = data[exc.start]
        raise InputError(
            [f"{path}:{line}: not valid {encoding} (byte 0x{byte:02x}){hint}"]
        ) from None


# The recipients file's size limit, unless the caller passes the setting's.
DEFAULT_MAX_FILE_MB = 50


def _check_file(path: Path, max_mb: int) -> None:
    """A readable file within the size limit, or an :class:`InputError` saying why not."""
    try:
        if path.is_dir():
            raise InputError([f"{path}: is a directory, not a file"])
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError([f"{path}: no such file"]) from None
    except OSError as exc:
        raise InputError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    if size > max_mb * 1024 * 1024:
        raise InputError(
            [
                f"{path}: {size / 1024 / 1024:.1f} MB, more than the "
                f"{max_mb} MB allowed (MAILER_MAX_RECIPIENTS_FILE_MB)"
            ]
        )


def read_text(path: Path, encoding: str = "utf-8", *, max_mb: int = DEFAULT_MAX_FILE_MB) -> str:
    """The file's text, or an :class:`InputError` that says what is wrong with it."""
    _check_file(path, max_mb)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    return _decode(path, data, encoding)


def capped(path: Path, problems: list[str], what: str) -> list[str]:
    """The first ``MAX_LISTED_INVALID`` problems, then one line counting the rest."""
    shown = problems[:MAX_LISTED_INVALID]
    if len(problems) > MAX_LISTED_INVALID:
        shown.append(
            f"{path}: … and {len(problems) - MAX_LISTED_INVALID} more {what} "
            f"({len(problems)} in all; --skip-invalid drops them)"
        )
    return shown


def _normalized_email(raw: str) -> str:
    """The address in canonical form (domain lower-cased, IDNA); raises EmailNotValidError."""
    result = validate_email(raw, check_deliverability=False)
    return result.normalized


@dataclass(frozen=True)
class _Header:
    """Where the columns are: the address, the optional name, and the template variables."""

    columns: list[str]
    email_index: int
    name_index: int | None
    variable_columns: list[tuple[int, str]]


@dataclass
class _Rows:
    """What reading the data rows found."""

    recipients: list[Recipient] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    first_line_of: dict[str, int] = field(default_factory=dict)
    merged: int = 0
    rows: int = 0


def parse_recipients(
    path: Path,
    *,
    encoding: str = "utf-8",
    skip_invalid: bool = False,
    max_recipients: int,
    max_file_mb: int = DEFAULT_MAX_FILE_MB,
) -> RecipientList:
    """Read and validate ``path``, collecting every problem in the result.

    The file is read as a stream, so memory follows the recipients kept, not the file.
    """
    try:
        _check_file(path, max_file_mb)
        with path.open(encoding=_codec_name(encoding), newline="") as stream:
            reader = csv.reader(stream)
            header = _read_header(path, reader)
            if isinstance(header, list):
                return RecipientList(problems=header)
            rows = _read_rows(path, reader, header)
    except UnicodeDecodeError:
        # Read the bytes once more for the line, the byte and a hint at the encoding.
        try:
            read_text(path, encoding, max_mb=max_file_mb)
        except InputError as exc:
            return RecipientList(problems=exc.problems)
        raise
    except InputError as exc:
        return RecipientList(problems=exc.problems)
    except OSError as exc:
        return RecipientList(problems=[f"{path}: cannot read: {exc.strerror or exc}"])
    return _result(path, header, rows, skip_invalid=skip_invalid, max_recipients=max_recipients)


def _read_header(path: Path, reader: Iterator[list[str]]) -> _Header | list[str]:
    """The header's layout, or the problems that make the file unusable."""
    try:
        header = next(reader)
    except StopIteration:
        return [f"{path}: empty file (expected a header row with an 'email' column)"]
    except csv.Error as exc:
        return [f"{path}:1: not a valid CSV header: {exc}"]
    if len(header) > MAX_COLUMNS:
        return [f"{path}:1: {len(header):,} columns in the header, at most {MAX_COLUMNS}"]
    columns = [column.strip() for column in header]
    lowered = [column.lower() for column in columns]
    if EMAIL_COLUMN not in lowered:
        found = ", ".join(repr(c) for c in columns[:20] if c) or "nothing"
        return [f"{path}:1: no 'email' column in the header (found {found})"]
    counts = Counter(c for c in lowered if c)
    duplicated = sorted(c for c, n in counts.items() if n > 1)
    if duplicated:
        return [f"{path}:1: column {c!r} appears more than once" for c in duplicated]
    email_index = lowered.index(EMAIL_COLUMN)
    return _Header(
        columns=columns,
        email_index=email_index,
        name_index=lowered.index(NAME_COLUMN) if NAME_COLUMN in lowered else None,
        variable_columns=[(i, c) for i, c in enumerate(columns) if c and i != email_index],
    )


def _read_rows(path: Path, reader: Any, header: _Header) -> _Rows:
    found = _Rows()
    first_line = reader.line_num + 1  # a quoted value may span lines: name the first
    try:
        for row in reader:
            if any(cell.strip() for cell in row):  # blank lines are not recipients
                found.rows += 1
                _read_row(path, first_line, row, header, found)
            first_line = reader.line_num + 1
    except csv.Error as exc:
        found.problems.append(f"{path}:{reader.line_num}: not valid CSV: {exc}")
    return found


def _read_row(path: Path, line: int, row: list[str], header: _Header, found: _Rows) -> None:
    width = len(header.columns)
    if len(row) > width:
        found.problems.append(
            f"{path}:{line}: {len(row)} fields but the header has {width} (an unquoted comma?)"
        )
        return
    row = row + [""] * (width - len(row))
    raw_email = row[header.email_index].strip()
    if not raw_email:
        found.invalid.append(f"{path}:{line}: email: empty")
        return
    try:
        email = _normalized_email(raw_email)
    except EmailNotValidError as exc:
        shown = raw_email if len(raw_email) <= 100 else raw_email[:100] + "…"
        found.invalid.append(f"{path}:{line}: email: {shown!r} is not a valid address: {exc}")
        return
    formula = formula_problem(email)
    if formula is not None:
        found.invalid.append(f"{path}:{line}: email: {raw_email[:100]!r} {formula}")
        return
    key = email.lower()
    if key in found.first_line_of:
        found.merged += 1
        found.warnings.append(
            f"{path}:{line}: email: {raw_email!r} duplicates line {found.first_line_of[key]}; "
            "merged"
        )
        return
    name = row[header.name_index].strip() if header.name_index is not None else ""
    variables = {column: row[i].strip() for i, column in header.variable_columns}
    problem = _value_problem(name, variables)
    if problem is not None:
        found.problems.append(f"{path}:{line}: {problem}")
        return
    found.first_line_of[key] = line
    found.recipients.append(Recipient(email=email, name=name, variables=variables, line=line))


def _value_problem(name: str, variables: dict[str, str]) -> str | None:
    """What is wrong with a row's values (length, control characters), naming the column."""
    if len(name) > MAX_NAME_CHARS:
        return f"{NAME_COLUMN}: {len(name):,} characters, at most {MAX_NAME_CHARS}"
    control = control_character(name)
    if control is not None:
        return f"{NAME_COLUMN}: contains the control character {control} (it goes in a header)"
    for column, value in variables.items():
        if len(value) > MAX_VALUE_CHARS:
            return f"{column}: {len(value):,} characters, at most {MAX_VALUE_CHARS:,}"
    return None


def _result(
    path: Path, header: _Header, found: _Rows, *, skip_invalid: bool, max_recipients: int
) -> RecipientList:
    """The list, with the problems that make it unusable as a whole."""
    problems = list(found.problems)
    invalid = found.invalid
    skipped = len(invalid) if skip_invalid else 0
    if invalid and not skip_invalid:
        problems += capped(path, invalid, "invalid addresses")
    if found.rows == 0 and not problems:
        problems.append(f"{path}: no recipients: the file has a header row but no data rows")
    elif not found.recipients and not problems:
        problems.append(f"{path}: no valid recipients left after skipping {skipped} invalid")
    if len(found.recipients) > max_recipients:
        problems.append(
            f"{path}: {len(found.recipients)} recipients after merging duplicates, more than "
            f"MAILER_MAX_CAMPAIGN_RECIPIENTS={max_recipients}"
        )
    return RecipientList(
        recipients=found.recipients,
        columns=[c for _, c in header.variable_columns] + [EMAIL_COLUMN],
        problems=problems,
        warnings=found.warnings,
        skipped_invalid=skipped,
        merged_duplicates=found.merged,
    )

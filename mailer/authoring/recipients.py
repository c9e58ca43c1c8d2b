"""Read a recipients CSV into validated, de-duplicated recipients.

Every problem is reported as one line naming the file, the line and the field, so an
operator can fix the file in one pass. Nothing here touches the database.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from mailer.errors import InputError

EMAIL_COLUMN = "email"
NAME_COLUMN = "name"
MAX_LISTED_INVALID = 20
# Russian CRM exports are often Windows-1251; we suggest it when UTF-8 fails and it fits.
FALLBACK_ENCODING = "cp1251"


@dataclass(frozen=True)
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


def _decode(path: Path, data: bytes, encoding: str) -> str:
    try:
        codec = codecs.lookup(encoding)
    except LookupError:
        raise InputError([f"--encoding: unknown encoding {encoding!r}"]) from None
    # A UTF-8 BOM (Excel adds one) is not part of the data.
    name = "utf-8-sig" if codec.name == "utf-8" else codec.name
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


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """The file's text, or an :class:`InputError` that says what is wrong with it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError([f"{path}: no such file"]) from None
    except IsADirectoryError:
        raise InputError([f"{path}: is a directory, not a file"]) from None
    except OSError as exc:
        raise InputError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    return _decode(path, data, encoding)


def _normalized_email(raw: str) -> str:
    """The address in canonical form (domain lower-cased, IDNA); raises EmailNotValidError."""
    result = validate_email(raw, check_deliverability=False)
    return result.normalized


def parse_recipients(
    path: Path,
    *,
    encoding: str = "utf-8",
    skip_invalid: bool = False,
    max_recipients: int,
) -> RecipientList:
    """Read and validate ``path``, collecting every problem in the result."""
    try:
        text = read_text(path, encoding)
    except InputError as exc:
        return RecipientList(problems=exc.problems)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return RecipientList(
            problems=[f"{path}: empty file (expected a header row with an 'email' column)"]
        )
    except csv.Error as exc:
        return RecipientList(problems=[f"{path}:1: not a valid CSV header: {exc}"])
    columns = [column.strip() for column in header]
    lowered = [column.lower() for column in columns]
    if EMAIL_COLUMN not in lowered:
        found = ", ".join(repr(c) for c in columns if c) or "nothing"
        return RecipientList(
            problems=[f"{path}:1: no 'email' column in the header (found {found})"]
        )
    duplicated = sorted({c for c in lowered if c and lowered.count(c) > 1})
    if duplicated:
        return RecipientList(
            problems=[f"{path}:1: column {c!r} appears more than once" for c in duplicated]
        )
    email_index = lowered.index(EMAIL_COLUMN)
    name_index = lowered.index(NAME_COLUMN) if NAME_COLUMN in lowered else None
    variable_columns = [(i, c) for i, c in enumerate(columns) if c and i != email_index]

    problems: list[str] = []
    invalid: list[str] = []
    warnings: list[str] = []
    recipients: list[Recipient] = []
    first_line_of: dict[str, int] = {}
    merged = 0
    rows = 0
    line = 1
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue  # blank lines are not recipients
            rows += 1
            if len(row) > len(columns):
                problems.append(
                    f"{path}:{line}: {len(row)} fields but the header has {len(columns)} "
                    "(an unquoted comma?)"
                )
                continue
            row = row + [""] * (len(columns) - len(row))
            raw_email = row[email_index].strip()
            if not raw_email:
                invalid.append(f"{path}:{line}: email: empty")
                continue
            try:
                email = _normalized_email(raw_email)
            except EmailNotValidError as exc:
                invalid.append(f"{path}:{line}: email: {raw_email!r} is not a valid address: {exc}")
                continue
            key = email.lower()
            if key in first_line_of:
                merged += 1
                warnings.append(
                    f"{path}:{line}: email: {raw_email!r} duplicates line {first_line_of[key]}; "
                    "merged"
                )
                continue
            first_line_of[key] = line
            name = row[name_index].strip() if name_index is not None else ""
            variables = {column: row[i].strip() for i, column in variable_columns}
            recipients.append(Recipient(email=email, name=name, variables=variables, line=line))
    except csv.Error as exc:
        problems.append(f"{path}:{reader.line_num}: not valid CSV: {exc}")

    skipped = 0
    if invalid and skip_invalid:
        skipped = len(invalid)
    elif invalid:
        problems.extend(invalid[:MAX_LISTED_INVALID])
        if len(invalid) > MAX_LISTED_INVALID:
            problems.append(
                f"{path}: … and {len(invalid) - MAX_LISTED_INVALID} more invalid addresses "
                f"({len(invalid)} in all; --skip-invalid drops them)"
            )
    if rows == 0 and not problems:
        problems.append(f"{path}: no recipients: the file has a header row but no data rows")
    elif not recipients and not problems:
        problems.append(f"{path}: no valid recipients left after skipping {skipped} invalid")
    if len(recipients) > max_recipients:
        problems.append(
            f"{path}: {len(recipients)} recipients after merging duplicates, more than "
            f"MAILER_MAX_CAMPAIGN_RECIPIENTS={max_recipients}"
        )
    return RecipientList(
        recipients=recipients,
        columns=[c for _, c in variable_columns] + [EMAIL_COLUMN],
        problems=problems,
        warnings=warnings,
        skipped_invalid=skipped,
        merged_duplicates=merged,
    )

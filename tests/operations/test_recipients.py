"""Reading recipient CSVs: every problem named by file, line and field."""

from pathlib import Path

import pytest

from mailer.operations.authoring.recipients import parse_recipients


def write(tmp_path: Path, content: str | bytes, name: str = "r.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def parse(path: Path, **kwargs):  # type: ignore[no-untyped-def]
    kwargs.setdefault("max_recipients", 10_000)
    return parse_recipients(path, **kwargs)


def test_reads_recipients_and_variables(tmp_path: Path) -> None:
    path = write(tmp_path, "email,name,company\nAnna@Example.COM,Анна,Ромашка\nb@example.com,,\n")
    result = parse(path)
    assert result.problems == []
    assert [r.email for r in result.recipients] == ["Anna@example.com", "b@example.com"]
    assert result.recipients[0].variables == {"name": "Анна", "company": "Ромашка"}
    assert result.recipients[0].name == "Анна"
    assert set(result.columns or []) == {"email", "name", "company"}


def test_utf8_bom_just_works(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbfemail,name\na@example.com,A\n")
    result = parse(path)
    assert result.problems == []
    assert result.recipients[0].email == "a@example.com"


def test_cp1251_file_suggests_the_encoding(tmp_path: Path) -> None:
    path = write(tmp_path, "email,name\na@example.com,Привет\n".encode("cp1251"))
    result = parse(path)
    assert result.problems == [
        f"{path}:2: not valid utf-8 (byte 0xcf); it decodes as cp1251: try --encoding cp1251"
    ]
    assert parse(path, encoding="cp1251").recipients[0].name == "Привет"


def test_unknown_encoding(tmp_path: Path) -> None:
    path = write(tmp_path, "email\na@example.com\n")
    assert parse(path, encoding="klingon").problems == ["--encoding: unknown encoding 'klingon'"]


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert parse(tmp_path / "nope.csv").problems == [f"{tmp_path / 'nope.csv'}: no such file"]
    assert parse(tmp_path).problems == [f"{tmp_path}: is a directory, not a file"]


def test_no_email_column(tmp_path: Path) -> None:
    path = write(tmp_path, "mail,name\na@example.com,A\n")
    assert parse(path).problems == [
        f"{path}:1: no 'email' column in the header (found 'mail', 'name')"
    ]


def test_header_only(tmp_path: Path) -> None:
    path = write(tmp_path, "email,name\n")
    assert parse(path).problems == [
        f"{path}: no recipients: the file has a header row but no data rows"
    ]


def test_invalid_addresses_listed_up_to_20_then_counted(tmp_path: Path) -> None:
    rows = "".join(f"bad{i}@\n" for i in range(25))
    path = write(tmp_path, "email\ngood@example.com\n" + rows)
    problems = parse(path).problems
    assert len(problems) == 21
    assert problems[0].startswith(f"{path}:3: email: 'bad0@' is not a valid address")
    assert (
        problems[-1]
        == f"{path}: … and 5 more invalid addresses (25 in all; --skip-invalid drops them)"
    )


def test_skip_invalid_drops_and_counts(tmp_path: Path) -> None:
    path = write(tmp_path, "email\ngood@example.com\nnot-an-address\n\n")
    result = parse(path, skip_invalid=True)
    assert result.problems == []
    assert [r.email for r in result.recipients] == ["good@example.com"]
    assert result.skipped_invalid == 1


def test_duplicates_differing_in_case_are_merged_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, "email\nIvan@example.com\nivan@EXAMPLE.com\nIVAN@example.com\n")
    result = parse(path)
    assert len(result.recipients) == 1
    assert result.merged_duplicates == 2
    assert result.warnings[0] == f"{path}:3: email: 'ivan@EXAMPLE.com' duplicates line 2; merged"


def test_limit_counts_after_merging(tmp_path: Path) -> None:
    path = write(tmp_path, "email\na@example.com\nA@example.com\nb@example.com\nc@example.com\n")
    assert parse(path, max_recipients=3).problems == []
    assert parse(path, max_recipients=2).problems == [
        f"{path}: 3 recipients after merging duplicates, more than MAILER_MAX_CAMPAIGN_RECIPIENTS=2"
    ]


def test_row_with_more_fields_than_header(tmp_path: Path) -> None:
    path = write(tmp_path, "email,name\na@example.com,Smith, John\n")
    assert parse(path).problems == [f"{path}:2: 3 fields but the header has 2 (an unquoted comma?)"]


@pytest.mark.parametrize("line_ending", ["\n", "\r\n"])
def test_line_numbers_count_physical_lines(tmp_path: Path, line_ending: str) -> None:
    content = line_ending.join(["email,note", 'a@example.com,"two', 'lines"', "x@", ""])
    path = write(tmp_path, content)
    assert parse(path).problems[0].startswith(f"{path}:4: email: 'x@'")

"""The message as it goes after DATA (RFC 5321 4.5.2): CRLF line ends, leading periods
doubled, the final dot."""

from __future__ import annotations

from activities.smtp_transaction import wire_form


def test_line_ends_become_crlf_and_the_final_dot_follows() -> None:
    assert wire_form(b"a\nb\rc\r\n") == b"a\r\nb\r\nc\r\n.\r\n"
    assert wire_form(b"no newline at the end") == b"no newline at the end\r\n.\r\n"


def test_a_line_starting_with_a_period_gets_another() -> None:
    assert wire_form(b".\r\n..x\r\nmid.dle\r\n") == b"..\r\n...x\r\nmid.dle\r\n.\r\n"

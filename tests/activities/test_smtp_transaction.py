"""The message as it goes after DATA (RFC 5321 4.5.2): CRLF line ends, leading periods
doubled, the final dot."""

from __future__ import annotations

from activities.smtp_transaction import wire_form


def test_line_ends_become_crlf_and_the_final_dot_follows() -> None:
    assert wire_form(b"a\nb\rc\r\n") == b"a\r\nb\r\nc\r\n.\r\n"
    assert wire_form(b"no newline at the end") == b"no newline at the end\r\n.\r\n"


def test_a_line_starting_with_a_period_gets_another() -> None:
    assert wire_form(b".\r\n..x\r\nmid.dle\r\n") == b"..\r\n...x\r\nmid.dle\r\n.\r\n"


def _rewritten(data: bytes) -> bytes:
    """RFC 5321's rules spelled out line by line: what every input must come out as."""
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return b"".join((b"." if line.startswith(b".") else b"") + line + b"\r\n" for line in lines) + (
        b".\r\n"
    )


def test_messages_already_in_wire_form_and_those_that_are_not_come_out_alike() -> None:
    # The first three take the fast path (nothing to rewrite); the rest are rewritten.
    samples = [
        b"Subject: x\r\n\r\nbody\r\n",
        b"a\r\n",
        b"mid.dle\r\nx.\r\n",
        b".leading\r\n",
        b"a\r\n.b\r\n",
        b"a\nb\r\n",
        b"a\rb\r\n",
        b"a\r\nb",
        b"\r\n\r\n.\r\n",
        b"a\r\r\nb\r\n",
    ]
    for data in samples:
        assert wire_form(data) == _rewritten(data), data

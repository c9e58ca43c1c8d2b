"""Text that is not ours, made safe to show on a terminal.

Campaign names, CSV values, notes written from a stranger's complaint and SMTP replies may
hold terminal control sequences (``ESC[2J`` clears the screen; OSC sequences set the
window title or write links). :func:`printable` shows every control character as a visible
escape, keeping only the line breaks and tabs text needs.
"""

from __future__ import annotations

import re

# C0 controls but TAB and LF, DEL, and the C1 controls (0x9b is a one-byte CSI).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escaped(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def printable(text: str) -> str:
    """``text`` with control characters shown as ``\\xNN`` (linear; newlines and tabs kept)."""
    return _CONTROL.sub(_escaped, text)

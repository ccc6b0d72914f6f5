"""Text that came from data, made safe to print on a terminal.

Field names, ids and values in an input file are untrusted: an ESC sequence in a field name
could recolour, move the cursor, retitle or (in some terminals) write to the clipboard when a
message quotes it. Messages quote such text through `printable`, which shows every control
character as a visible escape instead of sending it to the terminal.
"""

from __future__ import annotations

import re

# C0 and C1 controls (ESC, CR, BEL, CSI ...), DEL, the line/paragraph separators, and the
# bidirectional overrides and isolates that can make text read differently than it is stored.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_UNSAFE_KEEPING_LINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, lines: bool = False) -> str:
    """`text` as a string with every control character shown as `\\xNN` / `\\uNNNN`.

    Args:
        text: anything; non-strings are converted with `str` first.
        lines: keep newlines and tabs (for multi-line text shown as such); by default they are
            escaped too, so quoted data can never start a line of its own in a message.
    """
    pattern = _UNSAFE_KEEPING_LINES if lines else _UNSAFE
    return pattern.sub(_escape, str(text))

"""Text from the database or a scenario, made safe for a terminal and for XML.

A pipeline can write any step name (`'\x1b[2J'`), and a terminal obeys what it prints; XML 1.0
cannot hold most control characters at all. Control characters are shown as escapes instead.
"""

from __future__ import annotations

import re

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group(0)):02x}" if ord(match.group(0)) < 0x100 else f"\\u{ord(match.group(0)):04x}"


def terminal(text: str) -> str:
    """Newlines kept; every other control character (ESC, CR, ...) shown as an escape."""
    return _CONTROL.sub(_escape, text)


def xml(text: str | None) -> str | None:
    """Characters XML 1.0 cannot hold, shown as escapes."""
    return None if text is None else _NOT_XML.sub(_escape, text)

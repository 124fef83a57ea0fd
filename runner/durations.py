"""Durations as people write them in scenarios: `250ms`, `30s`, `5m`, `1h`, `1.5s`."""

from __future__ import annotations

import re

PATTERN = r"^(0|[0-9]+(\.[0-9]+)?(ms|s|m|h))$"
MAX_SECONDS = 31 * 24 * 3600.0
"""31 days: longer than any soak run; a larger value is a typo that would overflow timers."""
_RE = re.compile(PATTERN)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse(text: str) -> float:
    """Seconds in a duration string; raises ValueError with a hint on bad input."""
    if not isinstance(text, str) or not _RE.fullmatch(text):
        raise ValueError(f"bad duration {text!r}: write a number and a unit, e.g. 250ms, 30s, 5m, 1h")
    if text == "0":
        return 0.0
    match = re.fullmatch(r"([0-9.]+)(ms|s|m|h)", text)
    assert match is not None
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_SECONDS:
        raise ValueError(f"duration {text!r} is longer than the limit of {format_seconds(MAX_SECONDS)} (31 days)")
    return seconds


def problem(text: str) -> str | None:
    """Why `text` is not a usable duration, or None when it is."""
    if isinstance(text, str) and text.strip().startswith("-"):
        return f"bad duration {text!r}: durations cannot be negative"
    try:
        parse(text)
    except ValueError as exc:
        return str(exc)
    return None


def format_seconds(seconds: float) -> str:
    """A short human form of a duration, for messages: 0.25 -> '250ms', 90 -> '1m30s'."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}".rstrip("0").rstrip(".") + "s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"


def spell(seconds: float) -> str:
    """A duration as a scenario writes it, in the largest unit that holds it whole: defaults declared once in
    seconds are shown in the schema this way (`parse(spell(x)) == x`)."""
    if seconds == 0:
        return "0"
    millis = round(seconds * 1000)
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if millis % size == 0:
            return f"{millis // size}{unit}"
    return f"{millis}ms"

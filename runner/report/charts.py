"""Small inline SVG charts the HTML pages share (the run report's latency table, compare's before and after and its
trends). A table's distributions share one scale, drawn once as an axis, so they can be read against each other."""

from __future__ import annotations

import math
from collections.abc import Sequence

from runner.durations import format_seconds

WIDTH = 160
"""The width of a distribution and of its axis: the two line up in a table's column."""


def histogram(values: Sequence[float], bins: int = 16, width: int = WIDTH, height: int = 18,
              span: tuple[float, float] | None = None) -> str:
    """A small inline SVG of a step's latency distribution (its bars also carry their counts for readers);
    `span` fixes the scale, so the distributions of one table (drawn with its `axis`) can be compared."""
    if not values:
        return ""
    low, high = span or (min(values), max(values))
    extent = (high - low) or 1.0
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, max(0, int((value - low) / extent * bins)))] += 1
    top = max(counts)
    bar = width / bins
    rects = "".join(f'<rect x="{i * bar:.1f}" y="{height - c / top * height:.1f}" width="{bar - 1:.1f}" '
                    f'height="{c / top * height:.1f}" fill="#57606a"><title>{c}</title></rect>'
                    for i, c in enumerate(counts) if c)
    label = (f"{len(values)} samples from {format_seconds(min(values))} to {format_seconds(max(values))}, "
             f"on a scale of {format_seconds(low)} to {format_seconds(high)}")
    return (f'<svg class="dist" width="{width}" height="{height}" role="img" aria-label="{label}"><title>{label}'
            f'</title><line x1="0" y1="{height - 0.5}" x2="{width}" y2="{height - 0.5}" stroke="#d0d7de"/>{rects}</svg>')


def span(samples: Sequence[Sequence[float]]) -> tuple[float, float]:
    """One scale for a table's distributions: from zero to a round value at or above the largest latency of any."""
    high = max((max(values) for values in samples if values), default=0.0) or 0.001
    step = _tick(high)
    return 0.0, step * math.ceil(round(high / step, 9))


def _tick(high: float) -> float:
    """A round distance between ticks (1, 2, 2.5 or 5 times a power of ten) giving at most four of them up to high."""
    raw = high / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))


def axis(scale: tuple[float, float], width: int = WIDTH) -> str:
    """The scale of a table's distributions as an SVG axis: a line with labelled ticks, as wide as a histogram."""
    low, high = scale
    ticks = max(1, round((high - low) / _tick(high - low)))
    parts = [f'<line x1="0" y1="1" x2="{width}" y2="1" stroke="#57606a"/>']
    for k, x, anchor, text in _tick_labels(low, high, ticks, width):
        parts.append(f'<line x1="{x:.1f}" y1="1" x2="{x:.1f}" y2="5" stroke="#57606a"/>')
        if text:
            parts.append(f'<text x="{x:.1f}" y="15" font-size="9" fill="#57606a" text-anchor="{anchor}">{text}</text>')
    label = f"scale: {format_seconds(low)} to {format_seconds(high)}"
    return (f'<svg class="axis" width="{width}" height="17" role="img" aria-label="{label}"><title>{label}</title>'
            f'{"".join(parts)}</svg>')


CHAR = 7.5
"""The width allowed per character of a tick's label at font size 9: the viewer's font is unknown, so a wide one
(Chromium's fallback sans-serif takes about 7 for a digit or an `m`) is assumed."""


def _tick_labels(low: float, high: float, ticks: int, width: int) -> list[tuple[int, float, str, str]]:
    """Every tick as (index, x, anchor, label). Labels go on every tick if they fit, else on every second one, and
    so on (the first and the last always), so "600ms" and "800ms" never print as one "600ms800ms"."""
    placed = []
    for k in range(ticks + 1):
        x, text = k * width / ticks, _label(low + (high - low) * k / ticks)
        anchor = "start" if k == 0 else "end" if k == ticks else "middle"
        left = {"start": x, "middle": x - len(text) * CHAR / 2, "end": x - len(text) * CHAR}[anchor]
        placed.append((k, x, anchor, text, left, left + len(text) * CHAR))
    for stride in range(1, ticks + 1):
        shown = [p for p in placed if p[0] % stride == 0 and p[0] <= ticks - stride or p[0] == ticks]
        if all(a[5] + 3 <= b[4] for a, b in zip(shown, shown[1:])):
            break
    keep = {p[0] for p in shown}
    return [(k, x, anchor, text if k in keep else "") for k, x, anchor, text, _, _ in placed]


def _label(seconds: float) -> str:
    """A tick's value: fractions of a millisecond kept (a 1 ms scale has ticks at 0.25 ms)."""
    return f"{round(seconds * 1000, 3):g}ms" if seconds < 1 else format_seconds(seconds)


def sparkline(values: Sequence[float | None], width: int = 90, height: int = 20) -> str:
    """A step's p50 over runs, oldest first, as a line (a run without the step leaves a gap); the newest is a dot."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, extent = min(known), (max(known) - min(known)) or 1.0
    step = width / max(1, len(values) - 1)
    points = [None if v is None else (2 + i * step, height - 3 - (v - low) / extent * (height - 6))
              for i, v in enumerate(values)]
    pieces: list[list[tuple[float, float]]] = [[]]
    for p in points:
        if p is None:
            pieces.append([])
        else:
            pieces[-1].append(p)
    lines = "".join(_piece(piece) for piece in pieces if piece)
    last = points[-1]
    dot = "" if last is None else f'<circle cx="{last[0]:.1f}" cy="{last[1]:.1f}" r="2.5" fill="#1f2328"/>'
    label = "p50 per run, oldest first: " + ", ".join("-" if v is None else format_seconds(v) for v in values)
    return (f'<svg class="trend" width="{width + 4}" height="{height}" role="img" aria-label="{label}"><title>{label}'
            f'</title>{lines}{dot}</svg>')


def _piece(points: list[tuple[float, float]]) -> str:
    if len(points) == 1:
        return f'<circle cx="{points[0][0]:.1f}" cy="{points[0][1]:.1f}" r="1.5" fill="#57606a"/>'
    joined = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polyline points="{joined}" fill="none" stroke="#57606a" stroke-width="1.5"/>'


def spark_text(values: Sequence[float | None]) -> str:
    """The same trend in a terminal: one block character per run (a gap as a dot)."""
    blocks = "▁▂▃▄▅▆▇█"
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, extent = min(known), (max(known) - min(known)) or 1.0
    return "".join("·" if v is None else blocks[min(7, int((v - low) / extent * 8))] for v in values)

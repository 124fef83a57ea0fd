"""Small inline SVG charts the HTML pages share (the run report's latency table, compare's before and after)."""

from __future__ import annotations

from runner.durations import format_seconds


def histogram(values: list[float], bins: int = 12, width: int = 120, height: int = 18,
              span: tuple[float, float] | None = None) -> str:
    """A small inline SVG of a step's latency distribution (its bars also carry their counts for readers);
    `span` fixes the axis, so two distributions can be read side by side."""
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
    label = f"{len(values)} samples from {format_seconds(low)} to {format_seconds(high)}"
    return f'<svg width="{width}" height="{height}" role="img" aria-label="{label}"><title>{label}</title>{rects}</svg>'

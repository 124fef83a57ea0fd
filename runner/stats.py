"""Order statistics, written once so every report (run, JSON, HTML, compare, the worker's) shows one p50.

Percentiles are nearest rank: always a latency that was observed, never an average of two.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile: the smallest value with at least `fraction` of the values at or below it."""
    if not values:
        raise ValueError("no values, no percentile")
    ordered = sorted(values)
    rank = math.ceil(round(fraction * len(ordered), 9))
    return ordered[max(0, min(len(ordered), rank) - 1)]


def median(values: Sequence[float]) -> float:
    """The p50 every report shows (nearest rank: the lower middle of an even count)."""
    return percentile(values, 0.5)

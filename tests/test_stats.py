"""One statistics module: nearest-rank percentiles, the p50 every report shows."""

from __future__ import annotations

import pytest

from runner import stats


@pytest.mark.parametrize("values,fraction,expected", [
    ([1.0, 2.0], 0.5, 1.0),
    ([4.0, 1.0, 3.0, 2.0], 0.5, 2.0),
    ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 0.5, 3.0),
    ([1.0, 2.0, 3.0, 4.0, 5.0], 0.5, 3.0),
    ([float(i) for i in range(1, 21)], 0.95, 19.0),
    ([float(i) for i in range(1, 101)], 0.95, 95.0),
    ([7.0], 0.95, 7.0),
    ([3.0, 1.0, 2.0], 0.0, 1.0),
    ([3.0, 1.0, 2.0], 1.0, 3.0),
])
def test_percentile_is_the_nearest_rank(values: list[float], fraction: float, expected: float):
    assert stats.percentile(values, fraction) == expected


def test_the_median_is_the_p50_every_report_shows():
    values = [1.0, 2.0, 3.0, 4.0]
    assert stats.median(values) == stats.percentile(values, 0.5) == 2.0


def test_no_values_have_no_percentile():
    with pytest.raises(ValueError):
        stats.percentile([], 0.5)

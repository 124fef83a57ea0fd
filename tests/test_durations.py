"""Durations as scenarios write them, and back."""

from __future__ import annotations

import pytest

from runner import durations


@pytest.mark.parametrize("seconds,text", [(300.0, "5m"), (1800.0, "30m"), (3.0, "3s"), (0.25, "250ms"),
                                          (7200.0, "2h"), (90.0, "90s"), (0.0, "0"), (1.5, "1500ms")])
def test_spell_writes_what_parse_reads(seconds: float, text: str):
    assert durations.spell(seconds) == text
    assert durations.parse(text) == seconds

"""The reconnect window's connect timeout: short, never past the window, and defined for a window without end."""

from __future__ import annotations

import math

from runner.db import reconnect


def test_a_window_without_end_has_a_connect_timeout() -> None:
    """`watch` waits for ever by default: the timeout of each attempt used to overflow (math.ceil(inf))."""
    assert reconnect.Window(math.inf).connect_timeout() == reconnect.CONNECT_TIMEOUT


def test_the_connect_timeout_never_runs_past_the_window() -> None:
    assert reconnect.Window(3.0).connect_timeout() == 3
    assert reconnect.Window(0.5).connect_timeout() == 2  # at least 2 s: libpq's own floor
    assert reconnect.Window(3600.0).connect_timeout() == reconnect.CONNECT_TIMEOUT

"""Step latencies of the watched jobs, from the writes watch reads: the metrics' histograms and the reports' table.

A step's latency is the time from a row's `(S, running)` write to the `(S, done)` that follows it,
on the database's clock (each history row's `changed_at`), so a backfill measures the past as it
was and the watch's own lag adds nothing. A step the definition says writes only `done` (the
deployment's job-level stages: silent while they work) is timed from the row's write before it (the
previous step's done, which set it off). Variants time the variant steps, the job row the job-level
steps; a step the definition does not have is not timed (it is a violation, and its name is the
application's, unbounded). One entry per row: its last write, dropped when the row is done at its
last step, and bounded, so rows left behind (failed, stuck) cost nothing once newer ones push them out.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from runner import stats
from runner.definition import Definition
from runner.watch.judge import REMEMBER
from runner.watch.source import Write

SAMPLE = 10_000
"""Latencies a reservoir keeps per step: the reports' percentiles come from this uniform sample; n and max are exact."""

Listener = Callable[[str, float], None]
"""Told each measured latency: (step, seconds)."""


class StepTimer:
    """Turns writes (in id order) into (step, seconds) pairs and hands each to the listeners."""

    def __init__(self, definition: Definition, listeners: list[Listener], remember: int = REMEMBER):
        self.definition = definition
        self.listeners = listeners
        self.remember = remember
        self._last: OrderedDict[str, tuple[str, str, datetime]] = OrderedDict()
        """row id -> its last write (step, status, when); the oldest forgotten past `remember`."""
        self._ends = {"v": definition.last_variant_step, "j": definition.job_names[-1] if definition.job_names
                      else definition.last_variant_step}

    def __call__(self, writes: list[Write]) -> None:
        for step, seconds in self.take(writes):
            for listener in self.listeners:
                listener(step, seconds)

    def take(self, writes: list[Write]) -> list[tuple[str, float]]:
        out = []
        for write in writes:
            before = self._last.pop(write.row_id, None)
            if write.status == "done" and before is not None and self._timed(write):
                step, status, at = before
                if "running" in self.definition.writes(write.step):
                    started = (step, status) == (write.step, "running")
                else:  # a stage that writes only done: from the write that set it off
                    started = step != write.step
                if started:
                    out.append((write.step, max(0.0, (write.changed_at - at).total_seconds())))
            if (write.step, write.status) != (self._ends.get(write.kind), "done"):
                self._last[write.row_id] = (write.step, write.status, write.changed_at)
                if len(self._last) > self.remember:
                    self._last.popitem(last=False)
        return out

    def _timed(self, write: Write) -> bool:
        """A step of the definition, on the row that runs it (the job row also mirrors the variant steps)."""
        step = write.step
        if step is None or not self.definition.has(step):
            return False
        return self.definition.level(step) == ("variant" if write.kind == "v" else "job")


@dataclass
class Reservoir:
    """A uniform sample of at most `size` values (Vitter's algorithm R), the exact count and maximum."""

    size: int = SAMPLE
    n: int = 0
    max: float = 0.0
    values: list[float] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def add(self, value: float) -> None:
        self.n += 1
        self.max = max(self.max, value)
        if len(self.values) < self.size:
            self.values.append(value)
            return
        slot = self.rng.randrange(self.n)
        if slot < self.size:
            self.values[slot] = value

    def summary(self) -> dict[str, float]:
        """n, p50, p95, p99 (nearest rank, of the sample), max: the reports' latency row."""
        return {"n": self.n, "p50": stats.percentile(self.values, 0.5), "p95": stats.percentile(self.values, 0.95),
                "p99": stats.percentile(self.values, 0.99), "max": self.max}


def seconds_between(first: datetime | None, last: datetime | None) -> float | None:
    return None if first is None or last is None else max(0.0, (last - first).total_seconds())

"""What a worker did, for its exit summary: outcomes per variant and step durations."""

from __future__ import annotations

import statistics
import threading
from dataclasses import dataclass, field

from runner.stats import percentile


@dataclass
class WorkerStats:
    completed: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    touched: set[str] = field(default_factory=set)
    durations: dict[str, list[float]] = field(default_factory=dict)
    transitions: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def transition(self, variant_id: str | None) -> None:
        """One write; `variant_id` None for a job row's (counted, but not a variant in flight)."""
        with self._lock:
            self.transitions += 1
            if variant_id is not None:
                self.touched.add(variant_id)

    def step_took(self, step: str, seconds: float) -> None:
        with self._lock:
            self.durations.setdefault(step, []).append(seconds)

    def outcome(self, variant_id: str, failed: bool) -> None:
        with self._lock:
            (self.failed if failed else self.completed).add(variant_id)

    def summary(self) -> str:
        with self._lock:
            in_flight = len(self.touched - self.completed - self.failed)
            lines = [f"variants: {len(self.completed)} completed, {len(self.failed)} failed, {in_flight} in flight; "
                     f"{self.transitions} transitions"]
            for step, values in self.durations.items():
                lines.append(f"  {step:17} n={len(values):<5} mean={statistics.fmean(values) * 1000:8.1f}ms "
                             f"p95={percentile(values, 0.95) * 1000:8.1f}ms")
        return "\n".join(lines)

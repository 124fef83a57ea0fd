"""Where the jobs in flight are: a count per step (the metrics' gauge) and the console's progress line.

A job is counted once, at the step that holds it back: its least advanced variant's step (in the
definition's order; a step the definition does not have comes last), or, once its job row walks
the job-level steps, the job row's step. So the counts add up to the jobs in flight.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from runner.report.safe import terminal

if TYPE_CHECKING:
    from runner.watch.judge import WatchJudge
    from runner.watch.loop import Watch

INTERVAL = 10.0
"""Seconds between two progress lines at least (a line is printed only when something changed)."""
SHOWN = 8
"""Steps a progress line names at most (the most crowded; the rest as `+N more`)."""


def jobs_at_steps(judge: WatchJudge) -> Counter[str]:
    """Jobs in flight per step that holds each back (see the module's docstring)."""
    definition = judge.definition
    unknown = len(definition.names)

    def rank(step: str) -> int:
        return definition.index(step) if definition.has(step) else unknown

    counts: Counter[str] = Counter()
    for state in judge.tracker.jobs.values():
        if state.lane is not None:
            counts[state.lane.walk.current[0]] += 1
            continue
        steps = [lane.walk.current[0] for lane in state.variants.values()]
        if steps:
            counts[min(steps, key=rank)] += 1
        else:
            counts["(no variant yet)"] += 1
    return counts


def line(judge: WatchJudge, at_steps: Counter[str]) -> str:
    """`in flight: 12 jobs — vlm_analyze 4, yolo_detect 6, planner 2; judged 340 (1 violated)`."""
    definition = judge.definition
    unknown = len(definition.names)
    crowded = {step for step, _ in at_steps.most_common(SHOWN)}
    shown = sorted(crowded, key=lambda s: (definition.index(s) if definition.has(s) else unknown, s))
    steps = ", ".join(f"{step} {at_steps[step]}" for step in shown)
    if len(at_steps) > SHOWN:
        steps += f", +{len(at_steps) - SHOWN} more"
    total = sum(at_steps.values())
    judged = sum(judge.outcomes.values())
    violated = judge.outcomes["violated"]
    text = f"in flight: {total} job{'' if total == 1 else 's'}" + (f" — {steps}" if steps else "")
    text += f"; judged {judged}" + (f" ({violated} violated)" if violated else "")
    return terminal(text)


class ProgressLine:
    """A turn hook of the watch: prints the line when it changed, at most every `interval` seconds."""

    def __init__(self, echo: Callable[[str], None], interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic):
        self.echo = echo
        self.interval = interval
        self.clock = clock
        self._last = ""
        self._at: float | None = None

    def __call__(self, watch: Watch) -> None:
        now = self.clock()
        if self._at is not None and now - self._at < self.interval:
            return
        judge = watch.judge
        if not judge.tracker.jobs and not judge.outcomes and not self._last:
            return  # nothing seen yet: nothing to say
        text = line(judge, jobs_at_steps(judge))
        if text != self._last:
            self.echo(text)
            self._last, self._at = text, now

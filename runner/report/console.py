"""The console: live progress on a terminal, plain timestamped lines in CI, failures always.

Verbosity: 0 (`-q`) prints only failures; 1 (default) a line per job and a summary per
scenario; 2 (`-v`) also a line per transition. On a TTY, jobs in flight are redrawn in place
(variants x current step, elapsed, a progress bar) above the permanent lines.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections import Counter
from datetime import datetime
from typing import TextIO

from runner.durations import format_seconds
from runner.engine.events import (AssertionFailed, Event, JobFinished, JobSeeded, Note, ScenarioFinished,
                                  ScenarioStarted, SessionFinished, SessionStarted, TransitionObserved)
from runner.engine.results import JobResult, Outcome, ScenarioResult
from runner.report import safe
from runner.report.summary import summary

REDRAW = 0.1
MAX_LIVE = 8
BAR = 20


class ConsoleReporter:
    def __init__(self, stream: TextIO, verbosity: int = 1, tty: bool = False):
        self.stream = stream
        self.verbosity = verbosity
        self.tty = tty
        self._live: dict[str, tuple[ScenarioResult, JobResult]] = {}
        self._drawn = 0
        self._last_draw = 0.0
        self.closed = False
        self._session_started = False

    def start(self) -> None:
        """Nothing to open: the stream is the caller's."""

    def handle(self, event: Event) -> None:
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is not None:
            handler(event)
        if self.tty:
            self._redraw(force=isinstance(event, (JobSeeded, JobFinished, ScenarioFinished)))

    __call__ = handle

    def finish(self, outcome: object) -> None:
        self._write(self._erase)

    # --- events -------------------------------------------------------------------------

    def _on_ScenarioStarted(self, event: ScenarioStarted) -> None:
        result = event.result
        where = "embedded PostgreSQL" if result.embedded else result.database
        tenant = result.record.tenant_id if result.record else result.plan.get("tenant", {}).get("id")
        self._line(1, f"{result.name}: run {result.run_id} on {where} (tenant {tenant})")

    def _on_JobSeeded(self, event: JobSeeded) -> None:
        job = event.job
        if job.outcome == "seeded":
            self._line(1, f"{event.scenario.name}: job {job.ordinal} seeded: {job.job_id} "
                          f"({len(job.seeded.variants)} variants, tenant {job.seeded.tenant_id})")
            return
        self._live[job.job_id] = (event.scenario, job)
        self._line(2, f"{event.scenario.name}: job {job.ordinal} seeded: {job.job_id} "
                      f"({len(job.seeded.variants)} variants)")

    def _on_TransitionObserved(self, event: TransitionObserved) -> None:
        if self.verbosity < 2:
            return
        t = event.transition
        who = f"variant #{event.creation_order}" if event.creation_order is not None else "job row"
        offset = format_seconds(max(0.0, t.seen_mono - event.job.seeded_mono))
        self._line(2, f"{event.scenario.name}: job {event.job.ordinal} {who}: {t.step} {t.status} (+{offset})")

    def _on_Note(self, event: Note) -> None:
        self._line(1, f"{event.scenario.name}: {event.text}")

    def _on_AssertionFailed(self, event: AssertionFailed) -> None:
        self._line(0, "FAIL " + event.failure.text(), stamp=False)

    def _on_JobFinished(self, event: JobFinished) -> None:
        job = event.job
        self._live.pop(job.job_id, None)
        took = f" in {format_seconds(job.duration)}" if job.duration is not None else ""
        self._line(1, f"{event.scenario.name}: job {job.ordinal} {job.outcome.upper()}{took}"
                      + (f" ({len(job.failures)} failure(s))" if job.failures else ""))

    def _on_SessionStarted(self, event: SessionStarted) -> None:
        self._session_started = True

    def _on_SessionFinished(self, event: SessionFinished) -> None:
        """The grand total, last, whatever the verbosity; not when nothing started (the error says it all)."""
        if self._session_started:
            self._line(0, event.totals.line(event.duration), stamp=False)

    def _on_ScenarioFinished(self, event: ScenarioFinished) -> None:
        if event.result.outcome == Outcome.NOT_RUN:
            self._line(1, f"{event.result.name}: NOT RUN - {event.result.note}", stamp=False)
            return
        head, *rest = summary(event.result)
        bad = event.result.outcome in ("failed", "error", "interrupted")
        self._line(0 if bad else 1, head, stamp=False)
        for line in rest:
            self._line(1, line, stamp=False)

    # --- output -------------------------------------------------------------------------

    def _line(self, level: int, text: str, stamp: bool = True) -> None:
        if self.verbosity < level:
            return
        prefix = f"{datetime.now():%H:%M:%S} " if stamp and not self.tty else ""
        self._write(lambda: (self._erase(), self.stream.write(prefix + safe.terminal(text) + "\n")))

    def _write(self, action) -> None:  # type: ignore[no-untyped-def]
        """Write, unless the reader went away (`| head`): the run and its reports go on regardless."""
        if self.closed:
            return
        try:
            action()
            self.stream.flush()
        except BrokenPipeError:
            self.closed = True
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())

    def _erase(self) -> None:
        if self.tty and self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _redraw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < REDRAW:
            return
        self._last_draw = now
        width = max(20, shutil.get_terminal_size().columns - 1)
        lines = [_crop(safe.terminal(progress_line(scenario, job)), width)
                 for scenario, job in list(self._live.values())[-MAX_LIVE:]]
        if len(self._live) > MAX_LIVE:
            lines.insert(0, f"  ... {len(self._live) - MAX_LIVE} more job(s) in flight")

        def draw() -> None:
            self._erase()
            if lines and self.verbosity >= 1:
                self.stream.write("\n".join(lines) + "\n")
                self._drawn = len(lines)

        self._write(draw)


def _crop(line: str, width: int) -> str:
    """A progress line that fits the terminal: a wrapped line could never be erased in place."""
    return line if len(line) <= width else line[: width - 1] + "…"


def progress_line(scenario: ScenarioResult, job: JobResult) -> str:
    expected = scenario.plan.get("expected_steps", [])
    done = 0
    at: Counter[str] = Counter()
    for trace in job.variants.values():
        reached = {t.step for t in trace.transitions if t.status == "done"}
        done += sum(1 for step in expected if step in reached)
        last = trace.last
        at[f"{last.step} {last.status}" if last else "seeded"] += 1
    total = max(1, len(expected) * len(job.variants))
    filled = round(BAR * done / total)
    where = ", ".join(f"{state} x{n}" for state, n in at.most_common(3))
    elapsed = format_seconds(time.monotonic() - job.seeded_mono)
    return f"  {scenario.name} job {job.ordinal} [{'#' * filled}{'.' * (BAR - filled)}] {elapsed:>6}  {where}"

"""The console: live progress on a terminal, plain timestamped lines in CI, failures always.

Verbosity: 0 (`-q`) prints only failures and the grand total; 1 (default) a line per job and a
summary per scenario; 2 (`-v`) also a line per transition. On a terminal, the jobs in flight
(of every scenario running) are drawn with rich's Live below the permanent lines: each line
cropped to the terminal's width, redrawn in place, and fitted again after a resize. The
progress is kept here, from the events, so nothing a worker thread is changing is read.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from runner.durations import format_seconds
from runner.engine.events import (AssertionFailed, CleanupFinished, Event, JobFinished, JobRef, JobSeeded, Note,
                                  ScenarioFinished, ScenarioStarted, SessionFinished, SessionStarted,
                                  TransitionObserved)
from runner.engine.results import Outcome
from runner.report import safe
from runner.report.summary import cleanup_lines, details, failing, heading

if TYPE_CHECKING:
    from rich.live import Live

REDRAW = 0.1
MAX_LIVE = 8
BAR = 20


@dataclass
class Progress:
    """One job in flight, as the events told it."""

    scenario: str
    job: JobRef
    expected: tuple[str, ...]
    reached: dict[int, set[str]] = field(default_factory=dict)
    """creation_order -> the expected steps it finished."""
    at: dict[int, str] = field(default_factory=dict)
    """creation_order -> its last state."""

    def line(self, now: float) -> str:
        done = sum(len(steps) for steps in self.reached.values())
        total = max(1, len(self.expected) * self.job.variants)
        filled = min(BAR, round(BAR * done / total))
        states: Counter[str] = Counter(self.at.get(order, "seeded") for order in range(1, self.job.variants + 1))
        where = ", ".join(f"{state} x{n}" for state, n in states.most_common(3))
        elapsed = format_seconds(max(0.0, now - self.job.seeded_mono))
        return f"  {self.scenario} job {self.job.ordinal} [{'#' * filled}{'.' * (BAR - filled)}] {elapsed:>6}  {where}"


class ConsoleReporter:
    def __init__(self, stream: TextIO, verbosity: int = 1, tty: bool = False):
        self.stream = stream
        self.verbosity = verbosity
        self.tty = tty
        self._expected: dict[str, tuple[str, ...]] = {}
        self._live: dict[str, Progress] = {}
        self._last_draw = 0.0
        self._rich: Live | None = None
        self.closed = False
        self._session_started = False

    def start(self) -> None:
        """Nothing to show until the session starts: a suite refused before it (invalid files) draws nothing."""

    def _open_live(self) -> None:
        """On a terminal, open the live area (rich is imported only then)."""
        if self.tty and self.verbosity >= 1 and self._rich is None:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.stream, force_terminal=True, highlight=False, soft_wrap=False)
            self._rich = Live(console=console, auto_refresh=False, transient=True, redirect_stdout=False,
                              redirect_stderr=False)
            self._rich.start()

    def handle(self, event: Event) -> None:
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is not None:
            handler(event)
        if self._rich is not None:
            self._redraw(force=isinstance(event, (JobSeeded, JobFinished, ScenarioFinished)))

    __call__ = handle

    def finish(self, outcome: object) -> None:
        if self._rich is not None:
            live, self._rich = self._rich, None
            with contextlib.suppress(Exception):
                live.stop()

    # --- events -------------------------------------------------------------------------

    def _on_ScenarioStarted(self, event: ScenarioStarted) -> None:
        self._expected[event.scenario.run_id] = event.expected_steps
        where = "embedded PostgreSQL" if event.embedded else event.database
        self._line(1, f"{event.scenario.name}: run {event.scenario.run_id} on {where} (tenant {event.tenant})")

    def _on_JobSeeded(self, event: JobSeeded) -> None:
        job = event.job
        if event.seed_only:
            self._line(1, f"{event.scenario.name}: job {job.ordinal} seeded: {job.job_id} "
                          f"({job.variants} variants, tenant {job.tenant_id})")
            return
        self._live[job.job_id] = Progress(event.scenario.name, job, self._expected.get(event.scenario.run_id, ()))
        self._line(2, f"{event.scenario.name}: job {job.ordinal} seeded: {job.job_id} ({job.variants} variants)")

    def _on_TransitionObserved(self, event: TransitionObserved) -> None:
        t = event.transition
        progress = self._live.get(event.job.job_id)
        if progress is not None and event.creation_order is not None:
            progress.at[event.creation_order] = f"{t.step} {t.status}"
            if t.status == "done" and t.step in progress.expected:
                progress.reached.setdefault(event.creation_order, set()).add(t.step)
        if self.verbosity < 2:
            return
        who = f"variant #{event.creation_order}" if event.creation_order is not None else "job row"
        offset = format_seconds(max(0.0, t.seen_mono - event.job.seeded_mono))
        self._line(2, f"{event.scenario.name}: job {event.job.ordinal} {who}: {t.step} {t.status} (+{offset})")

    def _on_Note(self, event: Note) -> None:
        self._line(1, f"{event.scenario.name}: {event.text}")

    def _on_AssertionFailed(self, event: AssertionFailed) -> None:
        self._line(0, "FAIL " + event.failure.text(), stamp=False)

    def _on_JobFinished(self, event: JobFinished) -> None:
        self._live.pop(event.job.job_id, None)
        took = f" in {format_seconds(event.duration)}" if event.duration is not None else ""
        self._line(1, f"{event.scenario.name}: job {event.job.ordinal} {event.outcome.upper()}{took}"
                      + (f" ({event.failures} failure(s))" if event.failures else ""))

    def _on_SessionStarted(self, event: SessionStarted) -> None:
        """A refused suite (invalid files, an interrupt before the start) started nothing: its error says it all."""
        self._session_started = event.refusal is None
        if self._session_started:
            self._open_live()
        for note in event.notes:
            self._line(1, note, stamp=False)

    def _on_SessionFinished(self, event: SessionFinished) -> None:
        """The grand total, last, whatever the verbosity; not when nothing started (the error says it all)."""
        if self._session_started:
            self._line(0, event.totals.line(event.duration), stamp=False)

    def _on_ScenarioFinished(self, event: ScenarioFinished) -> None:
        result = event.result
        for job_id in [j for j, p in self._live.items() if p.scenario == result.name]:
            del self._live[job_id]
        if result.outcome == Outcome.NOT_RUN:
            self._line(1, f"{result.name}: NOT RUN - {result.note}", stamp=False)
            return
        level = 0 if failing(result) else 1
        for line in heading(result):
            self._line(level, line, stamp=False)
        for line in details(result):
            self._line(1, line, stamp=False)

    def _on_CleanupFinished(self, event: CleanupFinished) -> None:
        """After the verdict, its own line(s); a cleanup that failed is shown even with -q."""
        for line in cleanup_lines(event.result):
            self._line(0 if event.result.cleanup_error else 1, line, stamp=False)

    # --- output -------------------------------------------------------------------------

    def _line(self, level: int, text: str, stamp: bool = True) -> None:
        if self.verbosity < level:
            return
        if self._rich is not None:
            from rich.text import Text

            live = self._rich
            self._write(lambda: live.console.print(Text(safe.terminal(text))))
            return
        prefix = f"{datetime.now():%H:%M:%S} " if stamp else ""
        self._write(lambda: self.stream.write(prefix + safe.terminal(text) + "\n"))

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

    def _redraw(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._rich is None or (not force and now - self._last_draw < REDRAW):
            return
        self._last_draw = now
        self._rich.update(self._renderable(now), refresh=False)
        live = self._rich
        self._write(live.refresh)

    def _renderable(self, now: float) -> Any:
        """The jobs in flight, one line each, cropped (never wrapped) to the terminal's width."""
        from rich.console import Group
        from rich.text import Text

        shown = list(self._live.values())[-MAX_LIVE:]
        lines = [f"  ... {len(self._live) - MAX_LIVE} more job(s) in flight"] if len(self._live) > MAX_LIVE else []
        lines += [safe.terminal(progress.line(now)) for progress in shown]
        return Group(*(Text(line, no_wrap=True, overflow="ellipsis") for line in lines))

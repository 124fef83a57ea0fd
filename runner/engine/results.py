"""What a scenario run produced: per-job results, per-step latency, the outcome."""

from __future__ import annotations

import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from runner.db.cleanup import CleanupResult
from runner.durations import format_seconds
from runner.engine.joblog import JobLog
from runner.db.registry import RunRecord, SeededJob
from runner.trace import Failure, Transition, VariantTrace
from runner.observe.observer import ObservationReport
from runner.errors import ExitCode, Problem
from runner.outcomes import Outcome
from runner.scenario.model import Scenario
from runner.stats import percentile


class _HoldsOutcome:
    """An outcome is always an `Outcome`, whoever sets it: a name is parsed, so a typo fails where it is made."""

    def __setattr__(self, name: str, value: object) -> None:
        super().__setattr__(name, Outcome(value) if name == "outcome" else value)


@dataclass
class JobResult(_HoldsOutcome):
    seeded: SeededJob
    seeded_at: datetime
    seeded_mono: float
    variants: dict[str, VariantTrace]
    job_trace: list[Transition] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    outcome: Outcome = Outcome.RUNNING
    """running, passed, failed, interrupted, seeded or error."""
    finished_at: datetime | None = None
    finished_mono: float | None = None
    final_state: tuple[str, str] | None = None
    detected: list[Failure] = field(default_factory=list)
    """Failures the scenario declared in expect.detect: reported, expected, not counted against the job."""
    retries: dict[int, dict[str, int]] = field(default_factory=dict)
    """creation_order (0: the job row) -> step -> retries seen."""

    @property
    def ordinal(self) -> int:
        return self.seeded.ordinal

    @property
    def job_id(self) -> str:
        return self.seeded.job_id

    @property
    def duration(self) -> float | None:
        return None if self.finished_mono is None else self.finished_mono - self.seeded_mono


@dataclass(frozen=True, slots=True)
class StepLatency:
    n: int
    p50: float
    p95: float
    max: float
    p99: float = 0.0

    @classmethod
    def of(cls, values: Sequence[float]) -> StepLatency:
        """The order statistics of a non-empty sample (nearest rank, as every report shows them)."""
        return cls(len(values), percentile(values, 0.5), percentile(values, 0.95), max(values),
                   percentile(values, 0.99))


@dataclass(frozen=True, slots=True)
class Totals:
    """The grand total of a session."""

    scenarios: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    interrupted: int = 0
    not_run: int = 0
    cleanup_failed: int = 0
    """Scenarios whose cleanup policy could not be applied (their verdicts stand; the exit code says it)."""
    flaky: int = 0
    """Scenarios that failed, then passed on a rerun (`--reruns`): not counted as passed."""
    invalid: int = 0
    """Files that failed to load (counted among the errors: each is an error entry of its own)."""

    @classmethod
    def of(cls, results: list[ScenarioResult]) -> Totals:
        return cls.count([r.outcome for r in results], sum(r.cleanup_error is not None for r in results),
                         sum(r.invalid for r in results))

    @classmethod
    def count(cls, outcomes: list[Outcome], cleanup_failed: int = 0, invalid: int = 0) -> Totals:
        """Scenarios by outcome (running: it never finished, so it counts as interrupted)."""
        return cls(len(outcomes), sum(o in (Outcome.PASSED, Outcome.SEEDED) for o in outcomes),
                   outcomes.count(Outcome.FAILED), outcomes.count(Outcome.ERROR),
                   sum(o in (Outcome.INTERRUPTED, Outcome.RUNNING) for o in outcomes),
                   outcomes.count(Outcome.NOT_RUN), cleanup_failed, outcomes.count(Outcome.FLAKY), invalid)

    def line(self, duration: float) -> str:
        """`N scenarios: P passed, F failed, E errors, S not run in T` — one greppable line (flaky, invalid files,
        interrupted and cleanups not done are said only when there are some)."""
        return f"{self.counts()} in {format_seconds(duration)}"

    def counts(self) -> str:
        """The line without its time (the HTML report's headline adds its own)."""
        flaky = f", {self.flaky} flaky" if self.flaky else ""
        invalid = f" ({self.invalid} invalid file{'s' if self.invalid != 1 else ''})" if self.invalid else ""
        interrupted = f", {self.interrupted} interrupted" if self.interrupted else ""
        cleanup = f"; {self.cleanup_failed} cleanup(s) not done" if self.cleanup_failed else ""
        return (f"{self.scenarios} scenarios: {self.passed} passed{flaky}, {self.failed} failed, {self.errors} errors"
                f"{invalid}{interrupted}, {self.not_run} not run{cleanup}")


@dataclass(frozen=True, slots=True)
class Attempt:
    """An earlier attempt of a scenario that `--reruns` ran again: its run, how it ended, what failed."""

    run_id: str
    outcome: Outcome
    duration: float
    failures: tuple[str, ...]
    """Each failure's headline (its error's first line for an error)."""


@dataclass
class ScenarioResult(_HoldsOutcome):
    name: str
    path: str
    run_id: str
    record: RunRecord | None = None
    jobs: JobLog = field(default_factory=JobLog)
    """Every job seeded, in order; judged jobs of a long run are read back from disk (`JobLog`)."""
    failures: list[Failure] = field(default_factory=list)
    """Failures that belong to the scenario, not to one job (latency limits, errors)."""
    outcome: Outcome = Outcome.RUNNING
    """passed, failed, interrupted, error, seeded or not_run."""
    error: str | None = None
    observation: ObservationReport | None = None
    latency: dict[str, StepLatency] = field(default_factory=dict)
    job_latency: StepLatency | None = None
    """Jobs end to end, seeding to last write, over every job that ran to its end (None: none did)."""
    cleanup: CleanupResult | None = None
    cleanup_policy: str = "on_success"
    cleanup_pending: datetime | None = None
    """The rows were kept because the pipeline may still work on them until then (`cleanup --pending`)."""
    cleanup_pending_rows: int = 0
    cleanup_error: str | None = None
    """Why the policy could not be applied (its verdict stands; the exit code says so)."""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration: float = 0.0
    database: str = ""
    embedded: bool = False
    plan: dict = field(default_factory=dict)
    pipeline_restarts: int = 0
    delayed_creations: int = 0
    statements: int = 0
    """Statements the runner itself sent (seeding, simulation, observation, checks)."""
    exit_code: int = 0
    """What this scenario alone would exit with (set when it ends)."""
    reconnects: int = 0
    """Times the run's own connection was lost and made again (the observer counts its own)."""
    worker: str = ""
    """The session worker that ran it (with -j N)."""
    note: str = ""
    """Why it did not run (fail-fast, an interrupt before it started)."""
    description: str = ""
    """What the scenario proves, as its file says: shown with a failure, so the reader knows what broke."""
    invalid: bool = False
    """A file that failed to load: `name` and `path` are the file, `error` its located problems; nothing of it ran."""
    attempts: list[Attempt] = field(default_factory=list)
    """Earlier attempts, oldest first, when `--reruns` ran it again after a failure."""

    def __post_init__(self) -> None:
        if not isinstance(self.jobs, JobLog):
            self.jobs = JobLog(self.jobs)

    @property
    def all_failures(self) -> list[Failure]:
        return self.jobs.failures() + self.failures

    def reasons(self) -> list[str]:
        """Each failure in one short line (`planner: p95 latency 180ms is over the limit 100ms (n=3)`), else what
        ended the run: the words of a summary line."""
        found = [brief(failure, self.name) for failure in self.all_failures]
        if self.error:
            found.append(f"error: {self.error.splitlines()[0]}")
        return found or ([self.note] if self.note else [])

    def __repr__(self) -> str:
        """Short, for a Python test's assertion message: the verdict and what failed, not every job's trace."""
        shown = self.reasons()
        more = f"; ... {len(shown) - 5} more" if len(shown) > 5 else ""
        listed = f": {'; '.join(shown[:5])}{more}" if shown else ""
        return f"<ScenarioResult {self.name!r} {self.outcome}, {len(self.jobs)} job(s){listed}>"


_ID_IN_PARENTHESES = re.compile(r" \([0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\)")


def brief(failure: Failure, scenario: str) -> str:
    """A failure's first line without the scenario's name and the row ids: `job 1 › variant #2 › planner: ...`."""
    line = failure.message.splitlines()[0] if failure.message else str(failure.kind)
    prefix = f"{scenario} › "
    return _ID_IN_PARENTHESES.sub("", line[len(prefix):] if line.startswith(prefix) else line)


def add_latencies(out: dict[str, array[float]], job: JobResult, job_steps: frozenset[str] = frozenset()) -> None:
    """Per step: seconds from the previous `done` to this step's `done` (database clock when known).

    Variant steps are measured on the variants; job-level steps on the job row. Kept as arrays of doubles (8 bytes
    a value), since a long run keeps every job's.
    """
    for trace in job.variants.values():
        _measure(trace.transitions, out, lambda step: step not in job_steps)
    if job_steps:
        _measure(job.job_trace, out, lambda step: step in job_steps)


def _measure(transitions: list[Transition], out: dict[str, array[float]], counts) -> None:  # type: ignore[no-untyped-def]
    previous = None
    for transition in transitions:
        if transition.status != "done":
            continue
        if previous is not None and transition.step != previous.step and counts(transition.step):
            out.setdefault(transition.step, array("d")).append(_seconds(previous, transition))
        previous = transition


def _seconds(earlier: Transition, later: Transition) -> float:
    if earlier.db_time is not None and later.db_time is not None and earlier.source != "seed":
        return max(0.0, (later.db_time - earlier.db_time).total_seconds())
    return max(0.0, later.seen_mono - earlier.seen_mono)


def summarise(values: dict[str, array[float]]) -> dict[str, StepLatency]:
    return {step: StepLatency.of(v) for step, v in values.items() if v}


def job_latency(job: JobResult) -> float:
    """Seconds from seeding a job to its last write: database time from its first write on, as a step's latency."""
    written = [t for trace in job.variants.values() for t in trace.transitions if t.source != "seed"]
    written += [t for t in job.job_trace if t.source != "seed"]
    if not written:
        return 0.0
    to_first = max(0.0, min(t.seen_mono for t in written) - job.seeded_mono)
    times = [t.db_time for t in written if t.db_time is not None]
    if len(times) == len(written):
        return to_first + (max(times) - min(times)).total_seconds()
    return max(0.0, max(t.seen_mono for t in written) - job.seeded_mono)


def invalid_entries(problems: Sequence[Problem]) -> list[ScenarioResult]:
    """One error entry per file that failed to load: named after the file, its located problems as its error."""
    by_file: dict[str, list[str]] = {}
    for problem in problems:
        by_file.setdefault(problem.file, []).append(str(problem))
    return [ScenarioResult(file, file, "", outcome=Outcome.ERROR, error="\n".join(lines), invalid=True,
                           exit_code=ExitCode.BAD_INPUT, note="the file failed to load: none of its scenarios ran")
            for file, lines in by_file.items()]


def not_run(scenario: Scenario, why: str) -> ScenarioResult:
    """A scenario the session did not run, and why (every report says it; it counts as not run)."""
    return ScenarioResult(scenario.name, str(scenario.path), "", outcome=Outcome.NOT_RUN, note=why,
                          description=scenario.description)

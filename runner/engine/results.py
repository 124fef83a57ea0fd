"""What a scenario run produced: per-job results, per-step latency, the outcome."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from datetime import datetime

from runner.db.cleanup import CleanupResult
from runner.durations import format_seconds
from runner.engine.joblog import JobLog
from runner.db.registry import RunRecord, SeededJob
from runner.trace import Failure, Transition, VariantTrace
from runner.observe.observer import ObservationReport
from runner.outcomes import Outcome
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

    @classmethod
    def of(cls, results: list[ScenarioResult]) -> Totals:
        return cls.count([r.outcome for r in results], sum(r.cleanup_error is not None for r in results))

    @classmethod
    def count(cls, outcomes: list[Outcome], cleanup_failed: int = 0) -> Totals:
        """Scenarios by outcome (running: it never finished, so it counts as interrupted)."""
        return cls(len(outcomes), sum(o.passing for o in outcomes), outcomes.count(Outcome.FAILED),
                   outcomes.count(Outcome.ERROR), sum(o in (Outcome.INTERRUPTED, Outcome.RUNNING) for o in outcomes),
                   outcomes.count(Outcome.NOT_RUN), cleanup_failed)

    def line(self, duration: float) -> str:
        """`N scenarios: P passed, F failed, E errors, S not run in T` — one greppable line."""
        interrupted = f", {self.interrupted} interrupted" if self.interrupted else ""
        cleanup = f"; {self.cleanup_failed} cleanup(s) not done" if self.cleanup_failed else ""
        return (f"{self.scenarios} scenarios: {self.passed} passed, {self.failed} failed, {self.errors} errors"
                f"{interrupted}, {self.not_run} not run{cleanup} in {format_seconds(duration)}")


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

    def __post_init__(self) -> None:
        if not isinstance(self.jobs, JobLog):
            self.jobs = JobLog(self.jobs)

    @property
    def all_failures(self) -> list[Failure]:
        return self.jobs.failures() + self.failures


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
    return {step: StepLatency(len(v), percentile(v, 0.5), percentile(v, 0.95), max(v)) for step, v in values.items() if v}

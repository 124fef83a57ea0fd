"""The engine speaks in events; every reporter (console, JUnit, JSON, HTML) is handed them in order.

Scenario runs emit them from worker threads onto a queue; the session hands them to the
reporters on one thread (runner/engine/session.py). Events are immutable snapshots naming the
scenario run (and worker) they belong to, so a reporter never reads what a worker is changing;
only ScenarioFinished carries the result, which is final by then."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from runner.engine.results import ScenarioResult, Totals
from runner.outcomes import Outcome
from runner.errors import Problem, YeRunError
from runner.trace import Failure, Transition


@dataclass(frozen=True, slots=True)
class ScenarioRef:
    """Which scenario run an event is about (several run at once with -j N)."""

    name: str
    run_id: str
    worker: str = ""


@dataclass(frozen=True, slots=True)
class JobRef:
    """A seeded job, as it was seeded."""

    ordinal: int
    job_id: str
    tenant_id: str
    variants: int
    seeded_mono: float


@dataclass(frozen=True, slots=True)
class ScenarioStarted:
    scenario: ScenarioRef
    database: str
    embedded: bool
    tenant: str
    expected_steps: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class JobSeeded:
    scenario: ScenarioRef
    job: JobRef
    seed_only: bool = False
    """observe: false — the job is left as seeded."""


@dataclass(frozen=True, slots=True)
class TransitionObserved:
    scenario: ScenarioRef
    job: JobRef
    transition: Transition
    creation_order: int | None
    """None for the job row."""


@dataclass(frozen=True, slots=True)
class Note:
    """Something the user should know that is not a failure (a reconnect, a delayed creation)."""

    scenario: ScenarioRef
    text: str


@dataclass(frozen=True, slots=True)
class AssertionFailed:
    scenario: ScenarioRef
    failure: Failure


@dataclass(frozen=True, slots=True)
class JobFinished:
    scenario: ScenarioRef
    job: JobRef
    outcome: Outcome
    duration: float | None
    failures: int


@dataclass(frozen=True, slots=True)
class ScenarioFinished:
    result: ScenarioResult
    """Final: nothing changes it once this is emitted."""


@dataclass(frozen=True, slots=True)
class CleanupFinished:
    """After the verdict: what the scenario's cleanup policy did (deleted, kept as pending, failed, skipped)."""

    scenario: ScenarioRef
    result: ScenarioResult


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a session runs nothing: the located problems of files that failed to load, else one message (a selection
    refused, an interrupt before the start); every reporter says it as it says a verdict."""

    message: str
    exit_code: int
    problems: tuple[Problem, ...] = ()

    @staticmethod
    def of(error: YeRunError) -> Refusal:
        return Refusal(str(error), error.exit_code, tuple(getattr(error, "problems", ())))


@dataclass(frozen=True, slots=True)
class SessionStarted:
    """The first event of every session, even one that runs nothing (then `refusal` says why)."""

    scenarios: int
    parallel: int
    database: str
    embedded: bool
    notes: tuple[str, ...] = ()
    """What the session says before it starts (the connection budget holding -j back, rows left pending)."""
    refusal: Refusal | None = None


@dataclass(frozen=True, slots=True)
class SessionFinished:
    totals: Totals
    duration: float
    exit_code: int
    error: str | None


Event = (ScenarioStarted | JobSeeded | TransitionObserved | Note | AssertionFailed | JobFinished | ScenarioFinished
         | CleanupFinished | SessionStarted | SessionFinished)
Handler = Callable[[Event], None]


class Emitter:
    """Sends each event to every handler, in order."""

    def __init__(self, handlers: list[Handler] | None = None):
        self.handlers = list(handlers or [])

    def __call__(self, event: Event) -> None:
        for handler in self.handlers:
            handler(event)

"""The engine speaks in events; every reporter (console, JUnit, JSON) is handed them in order.

Scenario runs emit them from worker threads onto a queue; the session hands them to the
reporters on one thread (runner/engine/session.py). Session events carry only snapshots."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from runner.engine.results import JobResult, ScenarioResult, Totals
from runner.trace import Failure, Transition


@dataclass(frozen=True, slots=True)
class ScenarioStarted:
    result: ScenarioResult


@dataclass(frozen=True, slots=True)
class JobSeeded:
    scenario: ScenarioResult
    job: JobResult


@dataclass(frozen=True, slots=True)
class TransitionObserved:
    scenario: ScenarioResult
    job: JobResult
    transition: Transition
    creation_order: int | None
    """None for the job row."""


@dataclass(frozen=True, slots=True)
class Note:
    """Something the user should know that is not a failure (a reconnect, a delayed creation)."""

    scenario: ScenarioResult
    text: str


@dataclass(frozen=True, slots=True)
class AssertionFailed:
    scenario: ScenarioResult
    failure: Failure


@dataclass(frozen=True, slots=True)
class JobFinished:
    scenario: ScenarioResult
    job: JobResult


@dataclass(frozen=True, slots=True)
class ScenarioFinished:
    result: ScenarioResult


@dataclass(frozen=True, slots=True)
class SessionStarted:
    scenarios: int
    parallel: int
    database: str
    embedded: bool


@dataclass(frozen=True, slots=True)
class SessionFinished:
    totals: Totals
    duration: float
    exit_code: int
    error: str | None


Event = (ScenarioStarted | JobSeeded | TransitionObserved | Note | AssertionFailed | JobFinished | ScenarioFinished
         | SessionStarted | SessionFinished)
Handler = Callable[[Event], None]


class Emitter:
    """Sends each event to every handler, in order."""

    def __init__(self, handlers: list[Handler] | None = None):
        self.handlers = list(handlers or [])

    def __call__(self, event: Event) -> None:
        for handler in self.handlers:
            handler(event)

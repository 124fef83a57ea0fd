"""The engine speaks in events; console, JUnit and JSON writers are handlers of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from runner.engine.results import JobResult, ScenarioResult
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


Event = ScenarioStarted | JobSeeded | TransitionObserved | Note | AssertionFailed | JobFinished | ScenarioFinished
Handler = Callable[[Event], None]


class Emitter:
    """Sends each event to every handler, in order."""

    def __init__(self, handlers: list[Handler] | None = None):
        self.handlers = list(handlers or [])

    def __call__(self, event: Event) -> None:
        for handler in self.handlers:
            handler(event)

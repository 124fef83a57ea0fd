"""What the runner observed: transitions with both clocks, and the failures it found."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from runner.outcomes import FailureKind
from runner.scenario.model import Origin


@dataclass(frozen=True, slots=True)
class Transition:
    """One write of (current_step, status) to a variant or job row."""

    row_id: str
    job_id: str
    kind: str
    """'v' for a variant row, 'j' for the job row."""
    step: str
    status: str
    db_time: datetime | None
    """When the database recorded it (history: clock_timestamp(); LISTEN: the row's updated_at)."""
    seen_time: datetime
    """When the runner read it (wall clock, UTC)."""
    seen_mono: float
    """The same moment on the runner's monotonic clock (timeouts use this)."""
    retry_count: int | None = None
    source: str = "history"
    """history, notify, reconcile or seed: how the runner learned of it."""

    @property
    def state(self) -> tuple[str, str]:
        return (self.step, self.status)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        """Pickled as its constructor call: half the cost of the slots' state (a long run spills its traces)."""
        return (Transition, (self.row_id, self.job_id, self.kind, self.step, self.status, self.db_time,
                             self.seen_time, self.seen_mono, self.retry_count, self.source))


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed assertion, with everything a reader needs to act on it, and the place of what it broke."""

    kind: FailureKind
    message: str
    detail: str = ""
    job_ordinal: int | None = None
    job_id: str | None = None
    creation_order: int | None = None
    variant_id: str | None = None
    step: str | None = None
    spent: float | None = None
    limit: float | None = None
    seen_mono: float | None = None
    """When the write that broke the rule was seen (monotonic clock): a job's failures are listed in that order."""
    origin: Origin | None = None
    """Where the scenario wrote the expectation or limit it broke (its nearest written ancestor for a default)."""
    expectation: str | None = None
    """The JSON path of that expectation, e.g. `$.expect.latency.planner.p95`."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FailureKind(self.kind))  # a kind given by name is parsed: a typo fails here

    @property
    def broke(self) -> str:
        """`file:line:col: $.path` of what it broke; empty until the run has placed it."""
        if self.origin is None:
            return ""
        return f"{self.origin.file}:{self.origin.line}:{self.origin.col}: {self.expectation or '$'}"

    def headline(self) -> str:
        """The message, then what it broke: the one line a console, JUnit or pytest shows first."""
        return f"{self.message} (broke {self.broke})" if self.origin is not None else self.message

    def text(self) -> str:
        return self.headline() + ("\n" + self.detail if self.detail else "")


@dataclass
class VariantTrace:
    variant_id: str
    creation_order: int
    transitions: list[Transition] = field(default_factory=list)

    @property
    def states(self) -> list[tuple[str, str]]:
        return [t.state for t in self.transitions]

    @property
    def last(self) -> Transition | None:
        return self.transitions[-1] if self.transitions else None

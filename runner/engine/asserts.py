"""Checking one row's observed trace against the scenario's expectations.

A `Walk` takes a trace one transition at a time (`feed`) through the step model and says where
the row is, whether it has finished, and every way the trace broke the rules so far. Steps are
looked up by name, so a transition costs the same however long the pipeline is, and a tracker
feeds each transition once as it arrives: following a row is linear in its trace.
`final_problems` adds what can only be judged at the end (final state, a required failure that
never came). Both are pure: no clock, no database.

Failure kinds (`outcomes.FailureKind`): skipped_step, out_of_order, backwards, unknown_step,
unknown_status, duplicate_terminal, incomplete_step, unexpected_step, unexpected_failure,
retry_limit, retries_below_minimum, final_state, expected_failure_missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from runner.definition import DEFAULT, TERMINAL, Definition
from runner.outcomes import FailureKind
from runner.trace import Transition
from runner.scenario.model import Expectations


@dataclass(frozen=True, slots=True)
class Problem:
    kind: FailureKind
    step: str | None
    what: str
    at: int | None = None
    """Index in the trace of the transition where it was found (None: judged at the end)."""


@dataclass(slots=True)
class _Jump:
    """A forward jump past expected steps: a skip, or reaching a step too early once a skipped one shows up."""

    at: int
    step: str
    origin: str
    skipped: tuple[str, ...]
    late: set[str] = field(default_factory=set)

    def problem(self) -> Problem:
        if self.late:
            visited = ", ".join(s for s in self.skipped if s in self.late)
            return Problem(FailureKind.OUT_OF_ORDER, self.step, f"reached {self.step} before {visited}", self.at)
        return Problem(FailureKind.SKIPPED_STEP, self.skipped[0], f"skipped {', '.join(self.skipped)} (went from "
                       f"{self.origin} straight to {self.step})", self.at)


class _Plan:
    """What a walk compares against, worked out once so every transition is judged in constant time."""

    def __init__(self, expect: Expectations, creation_order: int, definition: Definition):
        self.steps = expect.steps
        self.at = {step: i for i, step in enumerate(expect.steps)}
        self.limits = {step: retries.max for step, retries in expect.retries}
        self.declared = frozenset(f.step for f in expect.failures if f.covers(creation_order))
        self.ends = frozenset(expected_final_states(expect, creation_order) + [(expect.steps[-1], "done")])
        self.statuses = frozenset(definition.statuses)
        self.floor = _floor(definition, self.at)
        """Per pipeline position: the last expected step at or before it (-1: none), where a retry resumes."""

    def limit(self, step: str) -> int:
        return self.limits.get(step, 0)


def _floor(definition: Definition, at: dict[str, int]) -> list[int]:
    out, position = [], -1
    for name in definition.names:
        position = at.get(name, position)
        out.append(position)
    return out


def expected_final_states(expect: Expectations, creation_order: int) -> list[tuple[str, str]]:
    """The states this variant may legitimately end in."""
    normal = (expect.final_variant.step, expect.final_variant.status)
    for failure in expect.failures:
        if failure.covers(creation_order):
            failed = (failure.step, "failed")
            return [failed] if failure.required else [failed, normal]
    return [normal]


def walk(trace: Iterable[Transition], expect: Expectations, creation_order: int, start: str,
         definition: Definition = DEFAULT, origin: float | None = None) -> Walk:
    """A whole trace walked at once; the first entry is normally the seeded state (start, done)."""
    return Walk(expect, creation_order, start, definition, origin).feed(trace)


class Walk:
    """One row's walk. `origin` is the seeding time on the monotonic clock: deadlines run from it until the
    first transition is read. A job row's lane is walked the same way, from the last variant step, against
    the job-level steps."""

    def __init__(self, expect: Expectations, creation_order: int, start: str, definition: Definition = DEFAULT,
                 origin: float | None = None):
        self.current: tuple[str, str] = (start, "done")
        self.position = -1
        """Index in the expected steps of the step the row is at (-1: the start state)."""
        self.retries: dict[str, int] = {}
        self.last_done_mono = origin
        self.last_seen_mono = origin
        self.failed_at: str | None = None
        self.finished = False
        self.gaps = 0
        """Forward jumps seen only by a reconciling read (listen mode): unobserved, not judged as skips."""
        self._plan = _Plan(expect, creation_order, definition)
        self._job_row = creation_order == 0
        self._definition = definition
        self._start = definition.index(start)
        self._found: list[Problem | _Jump] = []
        self._awaited: dict[str, list[_Jump]] = {}
        """Skipped steps not seen yet: seen later, their jump was out of order, not a skip."""
        self._late: set[str] = set()
        """Skipped steps seen later; their late visit is not 'backwards'."""
        self._fed = 0
        self._previous: tuple[str, str] | None = None
        self._pending: str | None = None
        """A failed step not yet judged: a retry may follow (counted), or not (unexpected_failure)."""
        self._rewind: tuple[int, int] | None = None
        """After a retry back before the start: (next pipeline position to walk again, the start's)."""

    @property
    def problems(self) -> list[Problem]:
        """Every problem so far, with what the end of the trace decides (retries over the limit, a failure
        nothing can retry any more)."""
        found = [p.problem() if isinstance(p, _Jump) else p for p in self._found]
        return found + self._closing()

    @property
    def outcome(self) -> str:
        if not self.finished:
            return "running"
        return "failed" if self.current[1] == "failed" else "completed"

    def feed(self, transitions: Iterable[Transition]) -> Walk:
        """Take the next transitions of the row, in the order they happened."""
        for t in transitions:
            self._take(t)
        self.finished = self._is_finished()
        return self

    # --- one transition -------------------------------------------------------------------

    def _take(self, t: Transition) -> None:
        first = self._fed == 0
        self._fed += 1
        self._seen(t.step)
        self.last_seen_mono = t.seen_mono
        if first and t.state == self.current:
            self.last_done_mono = t.seen_mono
            self._previous = t.state
            return
        if not self._known(t):
            return
        if t.state == self._previous:
            if t.status in TERMINAL:
                self._fail(FailureKind.DUPLICATE_TERMINAL, t.step, self._twice(t))
            return
        if self._pending is not None and not self._is_retry_of_pending(t):
            self._fail(FailureKind.UNEXPECTED_FAILURE, self._pending, f"failed at {self._pending}")
        self._pending = None
        self._move(t)
        self.current = t.state
        self._previous = t.state
        if t.status == "done":
            self.last_done_mono = t.seen_mono
        elif t.status == "failed":
            self.failed_at = t.step
            if t.step not in self._plan.declared:
                self._pending = t.step

    def _twice(self, t: Transition) -> str:
        """A job-level step done twice on the job row is the deployment's double start of a stage."""
        if self._job_row and t.status == "done":
            return f"{t.step} ran twice: a duplicate trigger?"
        return f"wrote ({t.step}, {t.status}) twice in a row"

    def _known(self, t: Transition) -> bool:
        if t.status not in self._plan.statuses:
            self._fail(FailureKind.UNKNOWN_STATUS, t.step, f"wrote an unknown status {t.status!r} at {t.step}")
            return False
        if not self._definition.has(t.step):
            self._fail(FailureKind.UNKNOWN_STEP, t.step, f"moved to an unknown step {t.step!r}")
            return False
        return True

    def _move(self, t: Transition) -> None:
        step, status = self.current
        gap = t.source == "reconcile"
        if t.step == step:
            self._within_step(t)
        elif self._is_retry_jump(t):
            self._retry(step)
            self._resume_at(t.step)
        else:
            if status not in TERMINAL and not gap:
                self._fail(FailureKind.INCOMPLETE_STEP, step,
                           f"left {step} at {status} for {t.step} without reaching done")
            if not self._walk_again(t.step):
                self._enter(t.step, gap)

    def _fail(self, kind: FailureKind, step: str | None, what: str) -> None:
        self._found.append(Problem(kind, step, what, self._fed - 1))

    def _seen(self, step: str) -> None:
        jumps = self._awaited.pop(step, None)
        if jumps:
            self._late.add(step)
            for jump in jumps:
                jump.late.add(step)

    # --- retries --------------------------------------------------------------------------

    def _is_retry_of_pending(self, t: Transition) -> bool:
        return (t.step == self._pending and t.status in ("queued", "running", "done")) or self._is_retry_jump(t)

    def _is_retry_jump(self, t: Transition) -> bool:
        """A failed step retried from an earlier state, as the definition's retry rule says (overlay ->
        (planner, done) in the default)."""
        step, status = self.current
        if status != "failed" or not self._definition.has(step):
            return False
        target = self._definition.retry_target(step)
        return target != (step, "queued") and t.state == target

    def _resume_at(self, target: str) -> None:
        """A declared retry: the walk goes on from its target; a target at or before the start starts the row
        over, and the steps between it and the start are walked again."""
        at = self._definition.index(target)
        self.position = self._plan.floor[at]
        self._rewind = (at + 1, self._start) if at < self._start else None

    def _walk_again(self, step: str) -> bool:
        """After a retry back before the start: True for the next of the steps up to the start, in order."""
        if self._rewind is None:
            return False
        following, start = self._rewind
        at = self._definition.index(step)
        if at < following:
            return False
        if at > following and following <= start:
            skipped = self._definition.names[following:min(at, start + 1)]
            self._fail(FailureKind.SKIPPED_STEP, skipped[0],
                       f"skipped {', '.join(skipped)} (went from {self.current[0]} straight to {step})")
        if at > start:
            self._rewind = None
            return False
        self._rewind = (at + 1, start)
        return True

    def _within_step(self, t: Transition) -> None:
        step, status = self.current
        if status == "done":
            self._fail(FailureKind.BACKWARDS, step, f"ran {step} again ({t.status}) after it was done")
        elif status == "failed" and t.status in ("queued", "running", "done"):
            self._retry(step)

    def _retry(self, step: str) -> None:
        self.retries[step] = self.retries.get(step, 0) + 1

    # --- moving to another step -----------------------------------------------------------

    def _enter(self, step: str, gap: bool) -> None:
        target = self._plan.at.get(step)
        if target is None:
            self._unexpected(step)
            return
        if target > self.position + 1 and gap:
            self.gaps += 1
        elif target > self.position + 1:
            self._jump(step, target)
        elif target <= self.position:
            if step in self._late:
                self._late.discard(step)
                return
            self._backwards(step)
        self.position = target

    def _unexpected(self, step: str) -> None:
        last = self._plan.steps[-1]
        at = self._definition.index(step)
        if at > self._definition.index(last):
            self._fail(FailureKind.UNEXPECTED_STEP, step, f"went past {last}, the last expected step, to {step}")
        elif at <= self._start:
            self._backwards(step)
        else:
            self._fail(FailureKind.UNEXPECTED_STEP, step, f"{step} is not one of the expected steps")

    def _backwards(self, step: str) -> None:
        self._fail(FailureKind.BACKWARDS, step, f"returned to {step} after {self.current[0]} (not a declared retry)")

    def _jump(self, step: str, target: int) -> None:
        jump = _Jump(self._fed - 1, step, self.current[0], self._plan.steps[self.position + 1:target])
        self._found.append(jump)
        for skipped in jump.skipped:
            self._awaited.setdefault(skipped, []).append(jump)

    # --- the end of the trace so far ------------------------------------------------------

    def _closing(self) -> list[Problem]:
        """Retries over the limit (one per step); a failure nothing can retry any more."""
        last, plan = self._fed - 1, self._plan
        out = [Problem(FailureKind.RETRY_LIMIT, step, f"retried {step} {used} time(s); {plan.limit(step)} allowed",
                       last) for step, used in self.retries.items() if used > plan.limit(step)]
        step = self._pending
        if step is not None and self.retries.get(step, 0) >= plan.limit(step):
            out.append(Problem(FailureKind.UNEXPECTED_FAILURE, step, f"failed at {step}", last))
        return out

    def _is_finished(self) -> bool:
        """Nothing more is expected: a final state, the end of the steps, or a failure beyond retry."""
        step, status = self.current
        if status == "failed":
            return self.retries.get(step, 0) >= self._plan.limit(step)
        return self.current in self._plan.ends


def final_problems(state: Walk, expect: Expectations, creation_order: int) -> list[Problem]:
    """What is wrong with where the variant ended (call once it has finished or the run ends)."""
    too_few = [Problem(FailureKind.RETRIES_BELOW_MINIMUM, step, f"retried {step} {state.retries.get(step, 0)} "
                       f"time(s); at least {expect.retries_min(step, creation_order)} expected")
               for step, _ in expect.retries
               if step in expect.steps and state.retries.get(step, 0) < expect.retries_min(step, creation_order)]
    return too_few + _final_state_problems(state, expect, creation_order)


def _final_state_problems(state: Walk, expect: Expectations, creation_order: int) -> list[Problem]:
    current = state.current
    allowed = expected_final_states(expect, creation_order)
    if current in allowed:
        return []
    required = next((f for f in expect.failures if f.covers(creation_order) and f.required), None)
    reported = {(p.kind, p.step) for p in state.problems}
    if current[1] == "failed" and (FailureKind.UNEXPECTED_FAILURE, current[0]) in reported:
        return []
    if current[1] == "failed" and state.retries.get(current[0], 0) < expect.retries_at(current[0]):
        return [Problem(FailureKind.UNEXPECTED_FAILURE, current[0],
                        f"failed at {current[0]} and was not retried ({expect.retries_at(current[0])} "
                        "retries allowed)")]
    if required is not None and current != (required.step, "failed"):
        return [Problem(FailureKind.EXPECTED_FAILURE_MISSING, required.step,
                        f"was expected to fail at {required.step}, but ended ({current[0]}, {current[1]})")]
    wanted = " or ".join(f"({s}, {st})" for s, st in allowed)
    return [Problem(FailureKind.FINAL_STATE, current[0], f"ended ({current[0]}, {current[1]}); expected {wanted}")]

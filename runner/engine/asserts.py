"""Checking one variant's observed trace against the scenario's expectations.

`walk` replays a trace through the step model and says where the variant is, whether it has
finished, and every way the trace broke the rules so far; `final_problems` adds what can only
be judged at the end (final state, a required failure that never came). Both are pure.

Failure kinds: skipped_step, out_of_order, backwards, unknown_step, unknown_status,
duplicate_terminal, incomplete_step, unexpected_step, unexpected_failure, retry_limit,
retries_below_minimum, final_state, expected_failure_missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.definition import DEFAULT, TERMINAL, Definition
from runner.trace import Transition
from runner.scenario.model import Expectations


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str
    step: str | None
    what: str
    at: int | None = None
    """Index in the trace of the transition where it was found (None: judged at the end)."""


@dataclass
class Walk:
    current: tuple[str, str]
    position: int = -1
    """Index in the expected steps of the step the variant is at (-1: the start state)."""
    retries: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    last_done_mono: float | None = None
    last_seen_mono: float | None = None
    failed_at: str | None = None
    finished: bool = False
    gaps: int = 0
    """Forward jumps seen only by a reconciling read (listen mode): unobserved, not judged as skips."""

    @property
    def outcome(self) -> str:
        if not self.finished:
            return "running"
        return "failed" if self.current[1] == "failed" else "completed"


def expected_final_states(expect: Expectations, creation_order: int) -> list[tuple[str, str]]:
    """The states this variant may legitimately end in."""
    normal = (expect.final_variant.step, expect.final_variant.status)
    for failure in expect.failures:
        if failure.covers(creation_order):
            failed = (failure.step, "failed")
            return [failed] if failure.required else [failed, normal]
    return [normal]


def walk(trace: list[Transition], expect: Expectations, creation_order: int, start: str,
         definition: Definition = DEFAULT, origin: float | None = None) -> Walk:
    """Replay a trace; the first entry is normally the seeded state (start, done).

    `origin` is the seeding time on the monotonic clock: deadlines run from it until the
    first transition is read. A job row's lane is walked the same way, from the last variant
    step, against the job-level steps.
    """
    state = Walk(current=(start, "done"), last_done_mono=origin, last_seen_mono=origin)
    walker = _Walker(state, trace, list(expect.steps), expect, creation_order, definition)
    for index, transition in enumerate(trace):
        walker.step(index, transition)
    walker.finish()
    state.finished = _finished(state, expect, creation_order)
    return state


def final_problems(state: Walk, expect: Expectations, creation_order: int) -> list[Problem]:
    """What is wrong with where the variant ended (call once it has finished or the run ends)."""
    too_few = [Problem("retries_below_minimum", step, f"retried {step} {state.retries.get(step, 0)} time(s); at least "
                       f"{expect.retries_min(step, creation_order)} expected")
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
    if current[1] == "failed" and ("unexpected_failure", current[0]) in reported:
        return []
    if current[1] == "failed" and state.retries.get(current[0], 0) < expect.retries_at(current[0]):
        return [Problem("unexpected_failure", current[0],
                        f"failed at {current[0]} and was not retried ({expect.retries_at(current[0])} "
                        "retries allowed)")]
    if required is not None and current != (required.step, "failed"):
        return [Problem("expected_failure_missing", required.step,
                        f"was expected to fail at {required.step}, but ended ({current[0]}, {current[1]})")]
    wanted = " or ".join(f"({s}, {st})" for s, st in allowed)
    return [Problem("final_state", current[0], f"ended ({current[0]}, {current[1]}); expected {wanted}")]


def _finished(state: Walk, expect: Expectations, creation_order: int) -> bool:
    """Nothing more is expected: a final state, the end of the steps, or a failure beyond retry."""
    step, status = state.current
    if status == "failed":
        return state.retries.get(step, 0) >= expect.retries_at(step)
    ends = expected_final_states(expect, creation_order) + [(expect.steps[-1], "done")]
    return state.current in ends


class _Walker:
    def __init__(self, state: Walk, trace: list[Transition], expected: list[str], expect: Expectations,
                 creation_order: int, definition: Definition):
        self.definition = definition
        self.start = state.current[0]
        self.state = state
        self.trace = trace
        self.expected = expected
        self.expect = expect
        self.order = creation_order
        self.previous: tuple[str, str] | None = None
        self.pending: str | None = None
        """A failed step not yet judged: a retry may follow (counted), or not (unexpected_failure)."""
        self.index = 0
        self.late: set[str] = set()
        """Steps already reported as visited out of order; their late visit is not 'backwards'."""

    def fail(self, kind: str, step: str | None, what: str) -> None:
        self.state.problems.append(Problem(kind, step, what, self.index))

    def step(self, index: int, t: Transition) -> None:
        self.index = index
        state = self.state
        state.last_seen_mono = t.seen_mono
        if index == 0 and t.state == state.current:
            state.last_done_mono = t.seen_mono
            self.previous = t.state
            return
        if t.status not in self.definition.statuses:
            self.fail("unknown_status", t.step, f"wrote an unknown status {t.status!r} at {t.step}")
            return
        if not self.definition.has(t.step):
            self.fail("unknown_step", t.step, f"moved to an unknown step {t.step!r}")
            return
        if t.state == self.previous:
            if t.status in TERMINAL:
                self.fail("duplicate_terminal", t.step, f"wrote ({t.step}, {t.status}) twice in a row")
            return
        if self.pending is not None and not self._is_retry_of_pending(t):
            self.fail("unexpected_failure", self.pending, f"failed at {self.pending}")
        self.pending = None
        current_step, current_status = state.current
        gap = t.source == "reconcile"
        if t.step == current_step:
            self._within_step(t)
        elif self._is_retry_jump(t):
            self._retry(current_step)
            if t.step in self.expected:
                self.state.position = self.expected.index(t.step)
        else:
            if current_status not in ("done", "failed") and not gap:
                self.fail("incomplete_step", current_step,
                          f"left {current_step} at {current_status} for {t.step} without reaching done")
            self._enter(index, t.step, gap)
        state.current = t.state
        self.previous = t.state
        if t.status == "done":
            state.last_done_mono = t.seen_mono
        elif t.status == "failed":
            self._failed(t.step)

    def _is_retry_of_pending(self, t: Transition) -> bool:
        return (t.step == self.pending and t.status in ("queued", "running", "done")) or self._is_retry_jump(t)

    def finish(self) -> None:
        """Retries over the limit (one message per step); a failure nothing can retry any more."""
        self.index = len(self.trace) - 1
        for retried, used in self.state.retries.items():
            allowed = self.expect.retries_at(retried)
            if used > allowed:
                self.fail("retry_limit", retried, f"retried {retried} {used} time(s); {allowed} allowed")
        step = self.pending
        if step is not None and self.state.retries.get(step, 0) >= self.expect.retries_at(step):
            self.fail("unexpected_failure", step, f"failed at {step}")
            self.pending = None

    def _is_retry_jump(self, t: Transition) -> bool:
        """A failed step retried from an earlier state, as the definition's retry rule says (overlay ->
        (planner, done) in the default)."""
        step, status = self.state.current
        if status != "failed" or not self.definition.has(step):
            return False
        target = self.definition.retry_target(step)
        return target != (step, "queued") and t.state == target

    def _within_step(self, t: Transition) -> None:
        step, status = self.state.current
        if status == "done":
            self.fail("backwards", step, f"ran {step} again ({t.status}) after it was done")
        elif status == "failed" and t.status in ("queued", "running", "done"):
            self._retry(step)

    def _retry(self, step: str) -> None:
        self.state.retries[step] = self.state.retries.get(step, 0) + 1

    def _failed(self, step: str) -> None:
        self.state.failed_at = step
        if self.expect.failure_for(step, self.order) is None:
            self.pending = step

    def _enter(self, index: int, step: str, gap: bool = False) -> None:
        state = self.state
        if step not in self.expected:
            last = self.expected[-1]
            if self.definition.index(step) > self.definition.index(last):
                self.fail("unexpected_step", step, f"went past {last}, the last expected step, to {step}")
            elif self.definition.index(step) <= self.definition.index(self.start):
                self.fail("backwards", step, f"returned to {step} after {state.current[0]} (not a declared retry)")
            else:
                self.fail("unexpected_step", step, f"{step} is not one of the expected steps")
            return
        target = self.expected.index(step)
        if target > state.position + 1 and gap:
            state.gaps += 1
        elif target > state.position + 1:
            skipped = self.expected[state.position + 1:target]
            later = {t.step for t in self.trace[index + 1:]}
            visited_late = [s for s in skipped if s in later]
            if visited_late:
                self.late.update(visited_late)
                self.fail("out_of_order", step, f"reached {step} before {', '.join(visited_late)}")
            else:
                self.fail("skipped_step", skipped[0], f"skipped {', '.join(skipped)} (went from "
                          f"{state.current[0]} straight to {step})")
        elif target <= state.position:
            if step in self.late:
                self.late.discard(step)
                return
            self.fail("backwards", step, f"returned to {step} after {state.current[0]} (not a declared retry)")
        state.position = target

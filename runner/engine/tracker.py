"""Following the jobs of a run: traces, progress, deadlines, and the failures they add up to.

Each transition re-walks its variant (traces are short); a variant is finished when it
reached its final state, failed beyond retry, or ran out of time. A job is ready to be
judged when all its variants are finished. Deadlines (step, stall, job) are enforced on the
runner's monotonic clock, so a hung pipeline ends the run on time instead of hanging it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.durations import format_seconds
from runner.engine import messages
from runner.engine.asserts import Problem, Walk, final_problems, walk
from runner.engine.results import JobResult
from runner.trace import Failure, Transition
from runner.scenario.model import Scenario


@dataclass
class _VariantState:
    walk: Walk
    timed_out: Failure | None = None
    reported: int = 0
    """How many of the walk's problems were already turned into failures."""


@dataclass
class _JobState:
    result: JobResult
    variants: dict[str, _VariantState] = field(default_factory=dict)


class Tracker:
    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.jobs: dict[str, _JobState] = {}
        self.active: dict[str, _JobState] = {}
        """Jobs not judged yet: the loop's work is proportional to these, not to the whole run."""

    # --- following ----------------------------------------------------------------------

    def add(self, job: JobResult) -> None:
        state = _JobState(job)
        for variant_id, trace in job.variants.items():
            state.variants[variant_id] = _VariantState(self._walk(job, trace.transitions, trace.creation_order))
        self.jobs[job.job_id] = state
        self.active[job.job_id] = state

    def apply(self, transitions: list[Transition]) -> list[tuple[JobResult, Transition, int | None]]:
        """Record transitions of tracked rows; returns (job, transition, creation_order) for each."""
        applied = []
        touched: set[tuple[str, str]] = set()
        for t in transitions:
            state = self.active.get(t.job_id)
            if state is None:
                continue
            if t.kind == "j":
                state.result.job_trace.append(t)
                applied.append((state.result, t, None))
                continue
            trace = state.result.variants.get(t.row_id)
            if trace is None:
                continue
            trace.transitions.append(t)
            touched.add((t.job_id, t.row_id))
            applied.append((state.result, t, trace.creation_order))
        for job_id, variant_id in touched:
            state = self.jobs[job_id]
            trace = state.result.variants[variant_id]
            state.variants[variant_id].walk = self._walk(state.result, trace.transitions, trace.creation_order)
        return applied

    def _walk(self, job: JobResult, transitions: list[Transition], creation_order: int) -> Walk:
        return walk(transitions, self.scenario.expect, creation_order, self.scenario.start, job.seeded_mono)

    # --- progress -----------------------------------------------------------------------

    def new_failures(self, job_id: str) -> list[Failure]:
        """A job's sequence problems not reported yet."""
        state = self.jobs[job_id]
        out = []
        for variant_id, variant in state.variants.items():
            problems = variant.walk.problems
            for problem in problems[variant.reported:]:
                out.append(self._failure(state.result, variant_id, problem))
            variant.reported = len(problems)
        return out

    def finished(self, job_id: str) -> bool:
        state = self.jobs[job_id]
        return all(v.walk.finished or v.timed_out for v in state.variants.values())

    def unjudged_job(self, job_id: str) -> JobResult | None:
        state = self.active.get(job_id)
        return None if state is None else state.result

    def unjudged(self) -> list[JobResult]:
        return [s.result for s in self.active.values()]

    def in_flight(self) -> int:
        return len(self.active)

    def expected_job_state(self, job_id: str) -> tuple[str, str] | None:
        """The state the job row should reach; None when a timeout already decided the job."""
        state = self.jobs[job_id]
        if any(v.timed_out for v in state.variants.values()):
            return None
        final = self.scenario.expect.final_job
        if final is not None:
            return (final.step, final.status)
        failed = [v.walk.current for v in state.variants.values() if v.walk.current[1] == "failed"]
        if failed:
            return failed[-1]
        last = self.scenario.expect.final_variant
        return (last.step, "done")

    def acceptable_job_states(self, job_id: str) -> list[tuple[str, str]]:
        expected = self.expected_job_state(job_id)
        if expected is None:
            return []
        if self.scenario.expect.final_job is None and expected[1] == "failed":
            state = self.jobs[job_id]
            return [v.walk.current for v in state.variants.values() if v.walk.current[1] == "failed"]
        return [expected]

    # --- deadlines ----------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        deadlines = [d for state in self.active.values() for d, _ in self._deadlines(state)]
        return min(deadlines) if deadlines else None

    def enforce(self, now: float) -> list[Failure]:
        """Timeouts whose deadline has passed, as failures; the variants concerned are finished."""
        out = []
        for state in list(self.active.values()):
            if self.finished(state.result.job_id):
                continue
            job_deadline = state.result.seeded_mono + self.scenario.timeouts.job
            if now >= job_deadline:
                out.append(self._job_timeout(state, now))
                continue
            for variant_id, variant in state.variants.items():
                if variant.walk.finished or variant.timed_out:
                    continue
                failure = self._variant_timeout(state.result, variant_id, variant.walk, now)
                if failure is not None:
                    variant.timed_out = failure
                    out.append(failure)
        return out

    def _deadlines(self, state: _JobState) -> list[tuple[float, str]]:
        out = [(state.result.seeded_mono + self.scenario.timeouts.job, "job")]
        for variant in state.variants.values():
            if variant.walk.finished or variant.timed_out:
                continue
            step = self._step_under_way(variant.walk)
            if step is not None and variant.walk.last_done_mono is not None:
                out.append((variant.walk.last_done_mono + self.scenario.timeouts.for_step(step), "step"))
            if variant.walk.last_seen_mono is not None:
                out.append((variant.walk.last_seen_mono + self.scenario.timeouts.stall, "stall"))
        return out

    def _step_under_way(self, state: Walk) -> str | None:
        step, status = state.current
        if status != "done":
            return step
        expected = self.scenario.expect.steps
        return expected[state.position + 1] if state.position + 1 < len(expected) else None

    def _variant_timeout(self, job: JobResult, variant_id: str, state: Walk, now: float) -> Failure | None:
        step = self._step_under_way(state)
        timeouts = self.scenario.timeouts
        if step is not None and state.last_done_mono is not None:
            spent = now - state.last_done_mono
            if spent >= timeouts.for_step(step):
                what = f"did not finish within {format_seconds(timeouts.for_step(step))} (now {state.current[0]} " \
                       f"{state.current[1]})"
                return self._failure(job, variant_id, Problem("step_timeout", step, what), spent,
                                     timeouts.for_step(step))
        if state.last_seen_mono is not None and now - state.last_seen_mono >= timeouts.stall:
            what = f"no transition for {format_seconds(timeouts.stall)} (stalled at {state.current[0]} " \
                   f"{state.current[1]})"
            return self._failure(job, variant_id, Problem("stall_timeout", state.current[0], what),
                                 now - state.last_seen_mono, timeouts.stall)
        return None

    def _job_timeout(self, state: _JobState, now: float) -> Failure:
        waiting = []
        for variant_id, variant in state.variants.items():
            if not (variant.walk.finished or variant.timed_out):
                order = state.result.variants[variant_id].creation_order
                waiting.append(f"#{order} at {variant.walk.current[0]} {variant.walk.current[1]}")
                variant.timed_out = variant.timed_out or Failure("job_timeout", "job timeout")
        limit = self.scenario.timeouts.job
        return messages.job_failure(self.scenario.name, state.result.ordinal, state.result.job_id, "job_timeout",
                                    f"did not finish within {format_seconds(limit)}; unfinished variants: "
                                    + ", ".join(waiting), spent=now - state.result.seeded_mono, limit=limit)

    # --- judging ------------------------------------------------------------------------

    def final_variant_failures(self, job_id: str) -> list[Failure]:
        """End-of-job problems of each variant (final state, required failure missing)."""
        state = self.jobs[job_id]
        out = []
        for variant_id, variant in state.variants.items():
            if variant.timed_out:
                continue
            order = state.result.variants[variant_id].creation_order
            for problem in final_problems(variant.walk, self.scenario.expect, order):
                out.append(self._failure(state.result, variant_id, problem))
        return out

    def mark_judged(self, job_id: str) -> None:
        self.active.pop(job_id, None)

    def variant_outcome(self, job_id: str, variant_id: str) -> str:
        variant = self.jobs[job_id].variants[variant_id]
        return "timed_out" if variant.timed_out else variant.walk.outcome

    def _failure(self, job: JobResult, variant_id: str, problem: Problem, spent: float | None = None,
                 limit: float | None = None) -> Failure:
        trace = job.variants[variant_id]
        if spent is None and problem.step is not None:
            spent, limit = self._time_at(trace.transitions, problem), self.scenario.timeouts.for_step(problem.step)
        ideal = messages.ideal_states(self.scenario.expect, trace.creation_order, self.scenario.start)
        detail = messages.diff(ideal, trace.transitions, job.seeded_mono)
        return messages.variant_failure(self.scenario.name, job.ordinal, job.job_id, trace.creation_order,
                                        variant_id, problem, detail, spent, limit)

    @staticmethod
    def _time_at(transitions: list[Transition], problem: Problem) -> float | None:
        """Seconds from the last `done` before the problem to the transition where it was found."""
        if not transitions:
            return None
        at = min(problem.at if problem.at is not None else len(transitions) - 1, len(transitions) - 1)
        start = next((t for t in reversed(transitions[:at]) if t.status == "done"), transitions[0])
        end = transitions[at]
        if start.db_time is not None and end.db_time is not None and start.source != "seed":
            return max(0.0, (end.db_time - start.db_time).total_seconds())
        return max(0.0, end.seen_mono - start.seen_mono)

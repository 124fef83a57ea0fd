"""Following the jobs of a run: traces, progress, deadlines, and the failures they add up to.

Each transition is fed once to its row's walk, as it arrives; a variant is finished when it reached
its final state, failed beyond retry, or ran out of time. Once every variant is done at the last
variant step, the job row walks the job-level steps the scenario expects (its *lane*), checked like
a variant's trace. A job is ready to be judged when its variants and its lane are finished, or once
its verdict is decided (a problem no later write can undo, or a timeout): then the run waits a short
grace for what happens alongside, and judges it. Deadlines (step, stall, job) are enforced on the
runner's monotonic clock, so a hung pipeline ends the run on time instead of hanging it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from runner.durations import format_seconds
from runner.engine import messages
from runner.definition import Definition
from runner.engine.asserts import Problem, Walk, expected_final_states, final_problems, walk
from runner.engine.results import JobResult
from runner.outcomes import FailureKind
from runner.trace import Failure, Transition
from runner.scenario.model import Expectations, Scenario, State


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
    lane: _VariantState | None = None
    """The job row's walk over the job-level steps; None until every variant is done at the last step."""
    lane_start: int = 0
    """Index in the job row's trace where its lane starts."""
    lane_fed: int = 0
    """How much of the job row's trace the lane has taken."""
    decided: float | None = None
    """When its verdict became certain (a failure, a timeout), on the monotonic clock; None while it is not."""


class Tracker:
    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.definition: Definition = scenario.definition
        expect = scenario.expect
        self.lane_expect: Expectations | None = replace(
            expect, steps=expect.job_steps, final_variant=State(expect.job_steps[-1], "done"),
            failures=expect.job_failures) if expect.job_steps else None
        """What the job row's lane must show: the job-level steps, their failures and retries."""
        self.jobs: dict[str, _JobState] = {}
        """Jobs not judged yet: the loop's work (and the memory) is proportional to these, not to the whole run."""
        self._decided: dict[str, float] = {}
        """Jobs not judged yet whose verdict is decided, and since when."""

    # --- following ----------------------------------------------------------------------

    def add(self, job: JobResult) -> None:
        state = _JobState(job)
        for variant_id, trace in job.variants.items():
            state.variants[variant_id] = _VariantState(self._walk(job, trace.transitions, trace.creation_order))
        self.jobs[job.job_id] = state

    def apply(self, transitions: list[Transition]) -> list[tuple[JobResult, Transition, int | None]]:
        """Record transitions of tracked rows; returns (job, transition, creation_order) for each."""
        applied = []
        touched: set[str] = set()
        for t in transitions:
            state = self.jobs.get(t.job_id)
            if state is None:
                continue
            if t.kind == "j":
                state.result.job_trace.append(t)
                applied.append((state.result, t, None))
                touched.add(t.job_id)
                continue
            trace = state.result.variants.get(t.row_id)
            if trace is None:
                continue
            trace.transitions.append(t)
            state.variants[t.row_id].walk.feed((t,))
            touched.add(t.job_id)
            applied.append((state.result, t, trace.creation_order))
        for job_id in touched:
            state = self.jobs[job_id]
            self._walk_lane(state)
            if state.decided is None and self._has_failed(state):
                self._decide(state, max(t.seen_mono for t in transitions if t.job_id == job_id))
        return applied

    def _has_failed(self, state: _JobState) -> bool:
        """A problem in a lane that no later write undoes (one the scenario declared as a detection aside)."""
        for row, lane in self._lanes(state):
            order = state.result.variants[row].creation_order if row else 0
            problems = self._lane_problems(state, lane) if row == "" else lane.walk.problems
            expect = self.scenario.expect
            if lane.timed_out or any(not expect.detection_for(p.kind, p.step, order) for p in problems):
                return True
        return False

    def _decide(self, state: _JobState, at: float) -> None:
        if state.decided is None:
            state.decided = at
            self._decided[state.result.job_id] = at

    def decided(self, job_id: str, now: float, grace: float) -> bool:
        """Whether the job's verdict is certain and its grace is over: it is judged now, finished or not."""
        at = self._decided.get(job_id)
        return at is not None and now >= at + grace

    def decisions(self) -> dict[str, float]:
        """When each job not judged yet had its verdict decided (few: only failing jobs are here)."""
        return self._decided

    def _walk(self, job: JobResult, transitions: list[Transition], creation_order: int) -> Walk:
        return walk(transitions, self.scenario.expect, creation_order, self.scenario.start, self.definition,
                    job.seeded_mono)

    def _walk_lane(self, state: _JobState) -> None:
        """Walk the job row's lane once every variant is done at the last variant step and the job row has
        followed them there (or, seen only by a reconciling read, gone on to a job-level step)."""
        if self.lane_expect is None:
            return
        if state.lane is None:
            self._start_lane(state, self.lane_expect)
        if state.lane is not None:
            trace = state.result.job_trace
            state.lane.walk.feed(trace[state.lane_fed:])
            state.lane_fed = len(trace)

    def _start_lane(self, state: _JobState, expect: Expectations) -> None:
        last = (self.definition.last_variant_step, "done")
        variants = state.variants.values()
        if not all(v.walk.finished and v.walk.current == last and not v.timed_out for v in variants):
            return
        trace = state.result.job_trace
        cut = next((i for i, t in enumerate(trace) if t.state == last or self._is_job_step(t.step)), None)
        if cut is None:
            return
        origin = max(v.walk.last_done_mono or 0.0 for v in variants)
        state.lane = _VariantState(Walk(expect, 0, last[0], self.definition, origin))
        state.lane_start = state.lane_fed = cut

    def _lane_problems(self, state: _JobState, lane: _VariantState) -> list[Problem]:
        """The lane's problems, after a job-level step written before every variant was done."""
        early = self._early(state, state.result.job_trace[state.lane_start:])
        last = self.definition.last_variant_step
        first = [Problem(FailureKind.OUT_OF_ORDER, early.step, f"the job row reached {early.step} before every "
                         f"variant was done at {last}", 0)] if early is not None else []
        return first + lane.walk.problems

    def _is_job_step(self, step: str) -> bool:
        return self.definition.has(step) and self.definition.level(step) == "job"

    def _early(self, state: _JobState, lane: list[Transition]) -> Transition | None:
        """A job-level step written before the last variant was done (database clock; history mode)."""
        finished = [t.db_time for trace in state.result.variants.values() for t in trace.transitions
                    if t.state == (self.definition.last_variant_step, "done") and t.db_time is not None]
        if not finished:
            return None
        return next((t for t in lane if self._is_job_step(t.step) and t.db_time is not None and t.source == "history"
                     and t.db_time < max(finished)), None)

    # --- progress -----------------------------------------------------------------------

    def new_failures(self, job_id: str) -> list[Failure]:
        """A job's sequence problems not reported yet."""
        state = self.jobs[job_id]
        out = []
        for variant_id, variant in self._lanes(state):
            problems = self._lane_problems(state, variant) if variant_id == "" else variant.walk.problems
            for problem in problems[variant.reported:]:
                out.append(self._failure(state.result, variant_id, problem))
            variant.reported = len(problems)
        return out

    def _lanes(self, state: _JobState) -> list[tuple[str, _VariantState]]:
        """Every walked row of a job: its variants, then its job row ('' ) once that has a lane."""
        lanes = list(state.variants.items())
        return lanes + [("", state.lane)] if state.lane is not None else lanes

    def finished(self, job_id: str) -> bool:
        """Every variant finished and, where the job row's lane has started, that lane too.

        A lane that never starts (the job row does not follow its variants) is judged by the job row's
        final state after the settle window, like a job with no job-level steps.
        """
        state = self.jobs[job_id]
        if not all(v.walk.finished or v.timed_out for v in state.variants.values()):
            return False
        self._walk_lane(state)
        return state.lane is None or state.lane.walk.finished or state.lane.timed_out is not None

    def ended_failed(self, job_id: str) -> bool:
        """Whether a lane ended at a failed step with no retries left (a retry over the limit may follow)."""
        return any(lane.walk.outcome == "failed" for _, lane in self._lanes(self.jobs[job_id]))

    def unjudged_job(self, job_id: str) -> JobResult | None:
        state = self.jobs.get(job_id)
        return None if state is None else state.result

    def unjudged(self) -> list[JobResult]:
        return [s.result for s in self.jobs.values()]

    def in_flight(self) -> int:
        return len(self.jobs)

    def acceptable_job_states(self, job_id: str) -> list[tuple[str, str]]:
        """The states the job row may end in, as the scenario and the definition's job-row rule say; [] when a
        timeout already decided the job (no check then)."""
        state = self.jobs[job_id]
        lanes = [v for _, v in self._lanes(state)]
        if any(v.timed_out for v in lanes):
            return []
        final = self.scenario.expect.final_job
        if final is not None:
            return [(final.step, final.status)]
        failed = [v.walk.current for v in state.variants.values() if v.walk.current[1] == "failed"]
        if failed:
            return self._failed_job_states(failed)
        if self.lane_expect is not None:
            return expected_final_states(self.lane_expect, 0)
        return self._done_job_states()

    def _failed_job_states(self, failed: list[tuple[str, str]]) -> list[tuple[str, str]]:
        if self.definition.job_row == "each_step":
            return list(dict.fromkeys(failed))
        latest = max(self.definition.index(step) for step, _ in failed)
        return [(step, "failed") for step in self.definition.names[: latest + 1]]

    def _done_job_states(self) -> list[tuple[str, str]]:
        """Done at the last expected step; where the scenario stops before the pipeline's end, the job row may
        also have gone on (a scenario that stops early does not judge what comes after)."""
        last = self.scenario.expect.final_variant.step
        later = [(step, status) for step in self.definition.steps_after(last) for status in self.definition.statuses
                 if self.definition.level(step) == "job"]
        return [(last, "done")] + later

    # --- deadlines ----------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        deadlines = [d for state in self.jobs.values() for d, _ in self._deadlines(state)]
        return min(deadlines) if deadlines else None

    def enforce(self, now: float) -> list[Failure]:
        """Timeouts whose deadline has passed, as failures; the rows concerned are finished."""
        out = []
        for state in list(self.jobs.values()):
            if self.finished(state.result.job_id):
                continue
            job_deadline = state.result.seeded_mono + self.scenario.timeouts.job
            if now >= job_deadline:
                out.append(self._job_timeout(state, now))
                continue
            for variant_id, variant in self._lanes(state):
                if variant.walk.finished or variant.timed_out:
                    continue
                failure = self._variant_timeout(state.result, variant_id, variant.walk, now)
                if failure is not None:
                    variant.timed_out = failure
                    self._decide(state, now)
                    out.append(failure)
        return out

    def _deadlines(self, state: _JobState) -> list[tuple[float, str]]:
        out = [(state.result.seeded_mono + self.scenario.timeouts.job, "job")]
        for variant_id, variant in self._lanes(state):
            if variant.walk.finished or variant.timed_out:
                continue
            step = self._step_under_way(variant.walk, variant_id)
            if step is not None and variant.walk.last_done_mono is not None:
                out.append((variant.walk.last_done_mono + self.scenario.timeouts.for_step(step), "step"))
            if variant.walk.last_seen_mono is not None:
                out.append((variant.walk.last_seen_mono + self.scenario.timeouts.stall, "stall"))
        return out

    def _expect(self, row: str) -> Expectations:
        """The expectations of a lane: the variants', or the job row's ('')."""
        return self.lane_expect if row == "" and self.lane_expect is not None else self.scenario.expect

    def _step_under_way(self, state: Walk, row: str) -> str | None:
        step, status = state.current
        if status != "done":
            return step
        expected = self._expect(row).steps
        return expected[state.position + 1] if state.position + 1 < len(expected) else None

    def _variant_timeout(self, job: JobResult, variant_id: str, state: Walk, now: float) -> Failure | None:
        step = self._step_under_way(state, variant_id)
        timeouts = self.scenario.timeouts
        if step is not None and state.last_done_mono is not None:
            spent = now - state.last_done_mono
            if spent >= timeouts.for_step(step):
                what = self._timed_out(step, state, timeouts.for_step(step))
                return self._failure(job, variant_id, Problem(FailureKind.STEP_TIMEOUT, step, what), spent,
                                     timeouts.for_step(step))
        if state.last_seen_mono is not None and now - state.last_seen_mono >= timeouts.stall:
            what = f"no transition for {format_seconds(timeouts.stall)} (stalled at {state.current[0]} " \
                   f"{state.current[1]})"
            return self._failure(job, variant_id, Problem(FailureKind.STALL_TIMEOUT, state.current[0], what),
                                 now - state.last_seen_mono, timeouts.stall)
        return None

    def _timed_out(self, step: str, state: Walk, limit: float) -> str:
        """A step that wrote nothing never ran, as far as the database shows (a silent step shows nothing while it
        runs); one that wrote something did not finish."""
        current, status = state.current
        if status != "done":
            return f"did not finish within {format_seconds(limit)} (now {current} {status})"
        silent = self.definition.has(step) and self.definition.writes(step) == ("done",)
        return (f"never ran within {format_seconds(limit)}: nothing written after ({current}, done)"
                + (f" ({step} writes only done, so a run that hangs shows nothing either)" if silent else ""))

    def _job_timeout(self, state: _JobState, now: float) -> Failure:
        waiting = []
        for variant_id, variant in self._lanes(state):
            if not (variant.walk.finished or variant.timed_out):
                who = f"#{state.result.variants[variant_id].creation_order}" if variant_id else "the job row"
                waiting.append(f"{who} at {variant.walk.current[0]} {variant.walk.current[1]}")
                variant.timed_out = variant.timed_out or Failure(FailureKind.JOB_TIMEOUT, "job timeout")
        limit = self.scenario.timeouts.job
        what = "unfinished variants" if all(w.startswith("#") for w in waiting) else "unfinished"
        return messages.job_failure(self.scenario.name, state.result.ordinal, state.result.job_id,
                                    FailureKind.JOB_TIMEOUT,
                                    f"did not finish within {format_seconds(limit)}; {what}: "
                                    + ", ".join(waiting), spent=now - state.result.seeded_mono, limit=limit)

    # --- judging ------------------------------------------------------------------------

    def final_variant_failures(self, job_id: str) -> list[Failure]:
        """End-of-job problems of each finished lane (final state, required failure missing); a lane still under
        way (its job judged early, on a decided failure) has no end to judge."""
        state = self.jobs[job_id]
        out = []
        for variant_id, variant in self._lanes(state):
            if variant.timed_out or not variant.walk.finished:
                continue
            order = state.result.variants[variant_id].creation_order if variant_id else 0
            for problem in final_problems(variant.walk, self._expect(variant_id), order):
                out.append(self._failure(state.result, variant_id, problem))
        return out

    def retries(self, job_id: str) -> dict[int, dict[str, int]]:
        """Retries seen per row of a job (creation_order; 0 for the job row), for the reports."""
        state = self.jobs[job_id]
        out = {state.result.variants[v].creation_order: dict(lane.walk.retries) for v, lane in state.variants.items()}
        if state.lane is not None:
            out[0] = dict(state.lane.walk.retries)
        return {order: counts for order, counts in out.items() if counts}

    def mark_judged(self, job_id: str) -> None:
        """Forget the job: a long run holds only the jobs in flight."""
        self.jobs.pop(job_id, None)
        self._decided.pop(job_id, None)

    def _failure(self, job: JobResult, variant_id: str, problem: Problem, spent: float | None = None,
                 limit: float | None = None) -> Failure:
        if variant_id:
            trace = job.variants[variant_id]
            transitions, order, start = trace.transitions, trace.creation_order, self.scenario.start
        else:
            last = self.definition.last_variant_step
            cut = next((i for i, t in enumerate(job.job_trace) if t.state == (last, "done")), 0)
            transitions, order, start = job.job_trace[cut:], 0, last
        if spent is None and problem.step is not None:
            spent, limit = self._time_at(transitions, problem), self.scenario.timeouts.for_step(problem.step)
        ideal = messages.ideal_states(self._expect(variant_id), order, start, self.definition)
        detail = messages.diff(ideal, transitions, job.seeded_mono)
        seen = transitions[problem.at].seen_mono if problem.at is not None and problem.at < len(transitions) else None
        return messages.variant_failure(self.scenario.name, job.ordinal, job.job_id, order,
                                        variant_id or job.job_id, problem, detail, spent, limit, seen)

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

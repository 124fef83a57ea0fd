"""Judging each watched job against the pipeline definition, with the checker scenarios use.

Nothing here is a second checker: a watched job is followed by the engine's `Tracker` (the
trace walk of `engine.asserts`, the job row's lane, the step deadlines) under a *contract*, the
scenario every job of the definition must satisfy: every variant walks the variant steps to
the last one, the job row follows and walks the job-level steps, each step within its timeout,
each failed step retried at most `max_retries` times. A job that fails (a step fails and is not
retried, or is retried up to the limit) followed the contract: its outcome is `failed`, not a
violation. Time is the database's clock (each write's `changed_at`), so a backfill of the last
hour is judged as a live watch would have judged it.

A job is judged the moment its verdict is certain: at its first violation, or at its end state
(after `settle` seconds for a job row still behind its variants). Then it is forgotten; only its
id is kept, in a bounded set, so writes it makes later are not taken for a new job.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from runner.db.registry import SeededJob, SeededVariant
from runner.definition import STEP_TIMEOUT, Definition
from runner.engine import messages
from runner.engine.results import JobResult
from runner.engine.tracker import Tracker, _VariantState
from runner.outcomes import FailureKind
from runner.scenario.model import Detection, Expectations, Retries, Scenario, State, Timeouts
from runner.trace import Failure, Transition, VariantTrace
from runner.watch.source import JobFacts, Write

REMEMBER = 100_000
"""Judged job ids kept (about 10 MB): a write of one of them is not a new job."""
AFTER_END = 2_000
"""Jobs judged within the contract whose rows' last states are kept (about 2.5 kB each): a write to one of them
afterwards (the double-triggered job-level step running again once the job has ended, seconds later) is a
violation, reported then. About a minute of jobs at 2,000 writes/s; older ones are only ids in `judged`."""
SETTLE = 10.0
"""Seconds the job row may lag behind its variants once they are all at rest (the aggregate trigger's work)."""


@dataclass
class JobVerdict:
    """One judged job: what it did, and every violation found when it was judged (the first one decided it)."""

    job_id: str
    tenant_id: str | None
    seeded: bool
    outcome: str
    """completed, failed (it followed the contract and failed), or violated."""
    violations: list[Failure]
    variants: int
    first_write: datetime | None
    last_write: datetime | None
    end_state: tuple[str, str] | None
    """The job row's last state."""
    retries: dict[int, dict[str, int]] = field(default_factory=dict)
    broke: list[str] = field(default_factory=list)
    """Per violation, what it broke: `definition: $.path` (or the watch option)."""
    after_end: str | None = None
    """Set when a write came after the job had been judged: the outcome it had then (this verdict replaces it)."""

    @property
    def violated(self) -> bool:
        return self.outcome == "violated"


def contract(definition: Definition, max_retries: int = 2) -> Scenario:
    """The scenario every job of `definition` must satisfy (the checker's expectations, built once)."""
    bounds = tuple((step.name, step.timeout) for step in definition.steps)
    longest = max((b for _, b in bounds), default=STEP_TIMEOUT)
    expect = Expectations(
        steps=definition.variant_names[1:], final_variant=State(definition.last_variant_step, "done"), final_job=None,
        retries=tuple((name, Retries(max=max_retries)) for name in definition.names),
        job_steps=definition.job_names,
        detect=(Detection(FailureKind.UNEXPECTED_FAILURE),))  # a failed job is an outcome, not a violation
    total = sum(b for _, b in bounds) * (max_retries + 1)
    timeouts = Timeouts(step=STEP_TIMEOUT, bounds=bounds, stall=2 * longest + total, job=total + longest, grace=0.0)
    return Scenario(path=Path(definition.source), name="watch", expect=expect, start=definition.seed,
                    definition=definition, timeouts=timeouts, variants=0)


def transition(write: Write) -> Transition:
    """A write as the checker takes it: its database time is also the clock deadlines run on; its source says
    whether writes before it may be missing (`reconcile`: a jump is not judged as a skip)."""
    stamp = write.changed_at
    return Transition(write.row_id, write.job_id, write.kind, write.step if write.step is not None else "NULL",
                      write.status if write.status is not None else "NULL", stamp, stamp, stamp.timestamp(),
                      write.retry_count, write.source)


class Bounded:
    """An insertion-ordered set that forgets its oldest members past `size` (values optional)."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[str, object] = OrderedDict()

    def add(self, key: str, value: object = None) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: str) -> object:
        return self._items.get(key)

    def discard(self, key: str) -> None:
        self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


class WatchJudge:
    """The jobs in flight, each followed by the engine's tracker under the definition's contract."""

    def __init__(self, definition: Definition, max_retries: int = 2, settle: float = SETTLE,
                 remember: int = REMEMBER):
        self.definition = definition
        self.max_retries = max_retries
        self.settle = settle
        self.scenario = contract(definition, max_retries)
        self.tracker = Tracker(self.scenario)
        self.facts: dict[str, JobFacts] = {}
        self.judged = Bounded(remember)
        self._settle: dict[str, float] = {}
        self._ordinal = 0
        self.outcomes: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.seeded = 0
        self.late = 0
        """Writes to jobs already judged (a violated job going on; ignored)."""
        self.ended = Bounded(AFTER_END)
        """Jobs judged completed or failed: their verdict, and each row's states (job row: every terminal one)."""

    # --- following ----------------------------------------------------------------------

    def knows(self, job_id: str) -> bool:
        return job_id in self.facts or job_id in self.judged

    def follow(self, facts: JobFacts) -> None:
        self._ordinal += 1
        variants = tuple(SeededVariant(v, order) for v, order in facts.variants)
        job = SeededJob(self._ordinal, facts.job_id, facts.tenant_id or "", "", variants, ())
        first = facts.first_at or datetime.now(timezone.utc)
        result = JobResult(job, first, first.timestamp(), {v.id: VariantTrace(v.id, v.creation_order)
                                                          for v in variants})
        self.tracker.add(result)
        self.facts[facts.job_id] = facts

    def unknown_variants(self, writes: list[Write]) -> set[str]:
        """Followed jobs with a variant not known yet (inserted after the job was first read)."""
        out = set()
        for write in writes:
            state = self.tracker.jobs.get(write.job_id)
            if state is not None and write.kind == "v" and write.row_id not in state.result.variants:
                out.add(write.job_id)
        return out

    def learn(self, facts: JobFacts) -> None:
        """Variants of a followed job added since it was first read."""
        state = self.tracker.jobs.get(facts.job_id)
        if state is None:
            return
        for variant_id, order in facts.variants:
            if variant_id not in state.result.variants:
                state.result.variants[variant_id] = VariantTrace(variant_id, order)
                walk = self.tracker._walk(state.result, [], order)  # the tracker's own walk, as `add` makes it
                state.variants[variant_id] = _VariantState(walk)

    def apply(self, writes: list[Write], now: float) -> list[JobVerdict]:
        """Take the writes (in id order) of followed jobs; the verdicts they decide."""
        followed = []
        out = []
        for write in writes:
            if write.job_id in self.facts:
                followed.append(transition(write))
            elif write.job_id in self.ended:
                out.append(self._after_end(write))
            elif write.job_id in self.judged:
                self.late += 1
        touched = list(dict.fromkeys(job.job_id for job, _, _ in self.tracker.apply(followed)))
        for job_id in touched:
            verdict = self._review(job_id, now)
            if verdict is not None:
                out.append(verdict)
        return out

    def tick(self, now: float) -> list[JobVerdict]:
        """What time alone decides: a step or job past its timeout, a job row still behind after the settle."""
        out = []
        for failure in self.tracker.enforce(now):
            job_id = failure.job_id
            if job_id is None or job_id not in self.tracker.jobs:
                continue
            if self._retry_never_came(job_id, failure):
                verdict = self._review(job_id, now)
            else:
                verdict = self._judge(job_id, "violated", [failure])
            if verdict is not None:
                out.append(verdict)
        for job_id, until in list(self._settle.items()):
            if now >= until and job_id in self.tracker.jobs:
                verdict = self._review(job_id, now)
                if verdict is not None:
                    out.append(verdict)
        return out

    def next_deadline(self) -> float | None:
        """When time alone may decide a job (database clock, epoch seconds)."""
        times = [t for t in (self.tracker.next_deadline(), *self._settle.values()) if t is not None]
        return min(times) if times else None

    def in_flight(self) -> int:
        return self.tracker.in_flight()

    def at_steps(self) -> Counter[str]:
        """Rows in flight per step they are at (variants, and job rows that walk the job-level steps)."""
        counts: Counter[str] = Counter()
        for state in self.tracker.jobs.values():
            for lane in state.variants.values():
                counts[lane.walk.current[0]] += 1
            if state.lane is not None:
                counts[state.lane.walk.current[0]] += 1
        return counts

    # --- judging ------------------------------------------------------------------------

    def _review(self, job_id: str, now: float) -> JobVerdict | None:
        """The job's new problems, and whether it is at rest: a verdict when one is decided."""
        state = self.tracker.jobs[job_id]
        for _, lane in self._lanes(job_id):
            # Every problem, each time: a walk's closing problems come and go (a failure pending until its retry
            # comes, then a retry over the limit in its place), so "the ones after the last reported" can miss one.
            lane.reported = 0
        violations = [f for f in self.tracker.new_failures(job_id) if not self._benign(job_id, f)]
        violations += self._early(job_id)
        if violations:
            return self._judge(job_id, "violated", violations)
        if not state.variants or not self.tracker.finished(job_id):
            self._settle.pop(job_id, None)
            return None
        acceptable = self.tracker.acceptable_job_states(job_id)
        end = self._job_state(job_id)
        if acceptable and end not in acceptable:
            until = self._settle.setdefault(job_id, now + self.settle)
            if now < until:
                return None
            return self._judge(job_id, "violated", [self._behind(job_id, end, acceptable)])
        finals = [f for f in self.tracker.final_variant_failures(job_id) if not self._benign(job_id, f)]
        if finals:
            return self._judge(job_id, "violated", finals)
        failed = any(lane.walk.current[1] == "failed" for _, lane in self._lanes(job_id))
        return self._judge(job_id, "failed" if failed else "completed", [])

    def _lanes(self, job_id: str) -> list[tuple[str, _VariantState]]:
        state = self.tracker.jobs[job_id]
        lanes = list(state.variants.items())
        return lanes + [("", state.lane)] if state.lane is not None else lanes

    def _lane_of(self, job_id: str, failure: Failure) -> _VariantState | None:
        state = self.tracker.jobs[job_id]
        if failure.variant_id is not None:
            return state.variants.get(failure.variant_id)
        return state.lane

    def _benign(self, job_id: str, failure: Failure) -> bool:
        """A failure the row ended in (retries used up, or none came): the job failed, within the contract."""
        if failure.kind != FailureKind.UNEXPECTED_FAILURE:
            return False
        lane = self._lane_of(job_id, failure)
        return lane is not None and lane.walk.current == (failure.step, "failed")

    def _retry_never_came(self, job_id: str, failure: Failure) -> bool:
        """A row left failed with retries to spare, past the step's timeout: no retry is coming; it ended failed."""
        lane = self._lane_of(job_id, failure)
        if failure.kind != FailureKind.STEP_TIMEOUT or lane is None or lane.walk.current[1] != "failed":
            return False
        lane.timed_out = None
        lane.walk.finished = True
        return True

    def _early(self, job_id: str) -> list[Failure]:
        """A job-level step written before every variant was done at the last variant step (database clock).
        The tracker sees it once the variants are done; a variant that never gets there must not hide it."""
        state = self.tracker.jobs[job_id]
        job = state.result
        first = next((t for t in job.job_trace if self.definition.has(t.step)
                      and self.definition.level(t.step) == "job"), None)
        if first is None or first.db_time is None:
            return []
        last = (self.definition.last_variant_step, "done")
        done = [next((t.db_time for t in trace.transitions if t.state == last), None)
                for trace in job.variants.values()]
        if all(at is not None and at <= first.db_time for at in done):
            return []
        waiting = ", ".join(f"#{trace.creation_order} at {state.variants[v].walk.current}".replace("'", "")
                            for v, trace in job.variants.items() if state.variants[v].walk.current != last)
        return [messages.job_failure(self.scenario.name, job.ordinal, job_id, FailureKind.OUT_OF_ORDER,
                                     f"the job row reached {first.step} before every variant was done at "
                                     f"{last[0]}" + (f" (still: {waiting})" if waiting else ""), step=first.step)]

    def _job_state(self, job_id: str) -> tuple[str, str] | None:
        trace = self.tracker.jobs[job_id].result.job_trace
        return trace[-1].state if trace else None

    def _behind(self, job_id: str, end: tuple[str, str] | None, acceptable: list[tuple[str, str]]) -> Failure:
        job = self.tracker.jobs[job_id].result
        rows = sorted({lane.walk.current for lane in self.tracker.jobs[job_id].variants.values()})
        got = f"({end[0]}, {end[1]})" if end else "no recorded state"
        wanted = " or ".join(f"({s}, {st})" for s, st in acceptable[:3]) + (" ..." if len(acceptable) > 3 else "")
        at = ", ".join(f"({s}, {st})" for s, st in rows)
        return messages.job_failure(self.scenario.name, job.ordinal, job_id, FailureKind.JOB_FINAL_STATE,
                                    f"job row left behind its variants: it is at {got} {self.settle:g}s after every "
                                    f"variant came to rest at {at}; expected {wanted}")

    def _judge(self, job_id: str, outcome: str, violations: list[Failure]) -> JobVerdict:
        state = self.tracker.jobs[job_id]
        job = state.result
        facts = self.facts.pop(job_id)
        writes = [t.db_time for trace in job.variants.values() for t in trace.transitions] + \
                 [t.db_time for t in job.job_trace]
        stamps = [w for w in writes if w is not None]
        violations = sorted(violations, key=lambda f: (f.seen_mono is None, f.seen_mono or 0.0))
        verdict = JobVerdict(job_id, facts.tenant_id, facts.seeded, outcome, violations, len(job.variants),
                             facts.first_at or (min(stamps) if stamps else None), max(stamps) if stamps else None,
                             self._job_state(job_id), self.tracker.retries(job_id),
                             [self.broke(f) for f in violations])
        if outcome != "violated":
            states: dict[str, set[tuple[str, str]]] = {
                vid: {(t.step, t.status) for t in trace.transitions[-1:]} for vid, trace in job.variants.items()}
            states[job_id] = {(t.step, t.status) for t in job.job_trace if t.status in ("done", "failed")}
            self.ended.add(job_id, (verdict, job.ordinal, states))
        self.tracker.mark_judged(job_id)
        self._settle.pop(job_id, None)
        self.judged.add(job_id)
        self.outcomes[outcome] += 1
        self.seeded += facts.seeded
        for failure in violations:
            self.kinds[str(failure.kind)] += 1
        return verdict

    def _after_end(self, write: Write) -> JobVerdict:
        """A write to a job already judged completed or failed: judged again, violated (reported once)."""
        verdict, ordinal, states = self.ended.get(write.job_id)  # type: ignore[misc]
        self.ended.discard(write.job_id)
        state = (write.step, write.status)
        seen = states.get(write.row_id, set())
        kind = FailureKind.DUPLICATE_TERMINAL if state in seen else \
            FailureKind.UNKNOWN_STEP if not self.definition.has(write.step) else FailureKind.BACKWARDS
        row = "job row" if write.kind == "j" else f"variant {write.row_id}"
        what = (f"{row} wrote ({write.step}, {write.status}) after the job had ended ({verdict.outcome}, job row at "
                f"{'(%s, %s)' % verdict.end_state if verdict.end_state else 'no state'})"
                + (": the same state again, a step run twice" if kind == FailureKind.DUPLICATE_TERMINAL else ""))
        failure = messages.job_failure(self.scenario.name, ordinal, write.job_id, kind, what, step=write.step)
        self.outcomes[verdict.outcome] -= 1
        self.outcomes["violated"] += 1
        self.kinds[str(kind)] += 1
        return dataclasses.replace(verdict, outcome="violated", violations=[failure], broke=[self.broke(failure)],
                                   last_write=write.changed_at, after_end=verdict.outcome)

    # --- where a violation is placed ----------------------------------------------------

    def broke(self, failure: Failure) -> str:
        """What a violation broke: the definition's entry for its step (or its timeout), or the watch's option."""
        definition, step = self.definition, failure.step
        source = definition.source
        if failure.kind == FailureKind.RETRY_LIMIT:
            return f"--max-retries {self.max_retries}"
        if failure.kind in (FailureKind.JOB_TIMEOUT, FailureKind.STALL_TIMEOUT):
            return f"{source}: $.*.timeout (every step's, added up)"
        if failure.kind == FailureKind.JOB_FINAL_STATE:
            return f"{source}: $.job_row ({definition.job_row}), --settle {self.settle:g}s"
        if step is None or not definition.has(step):
            return f"{source}: $.variant_steps"
        at = definition.index(step)
        path = f"$.variant_steps[{at}]" if definition.level(step) == "variant" else \
            f"$.job_steps[{at - len(definition.variant_steps)}]"
        return f"{source}: {path}" + (".timeout" if failure.kind == FailureKind.STEP_TIMEOUT else "")

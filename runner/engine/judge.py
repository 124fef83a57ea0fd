"""Judging a run's jobs: when one is ready (finished, or failed for certain), on what its rows and checks say.

A job is judged once its variants and its job-row lane are finished and its trace is whole (the
observer caught up), after a settle window when the job row lags behind its variants; or a grace
after its first certain failure, without waiting for the rest of its run. A job that ended on a step
failed with no retries left waits that grace too: a retry over the limit may still come. A judged job leaves the
run's working state: its latencies go to per-step arrays, the job itself to the job log.
"""

from __future__ import annotations

import time
from array import array
from datetime import datetime, timezone
from typing import Any

import psycopg2

from runner.db import failures
from runner.durations import format_seconds
from runner.engine import checks, messages
from runner.engine.connection import RunConnection
from runner.engine.events import Emitter, JobFinished, JobRef, Note, ScenarioRef, TransitionObserved
from runner.engine.results import JobResult, Outcome, ScenarioResult, add_latencies, job_latency
from runner.engine.settings import RunSettings
from runner.engine.tracker import Tracker
from runner.engine.verdict import Verdict
from runner.observe.observer import Observer
from runner.outcomes import FailureKind
from runner.pipeline.host import PipelineHost
from runner.scenario.model import Scenario
from runner.trace import Transition


class Judge:
    def __init__(self, scenario: Scenario, settings: RunSettings, result: ScenarioResult, tracker: Tracker,
                 verdict: Verdict, connection: RunConnection, emit: Emitter, ref: ScenarioRef):
        self.scenario = scenario
        self.settings = settings
        self.result = result
        self.tracker = tracker
        self.verdict = verdict
        self.connection = connection
        self.emit = emit
        self.ref = ref
        self.checks: checks.CheckSession | None = None
        self.observer: Observer | None = None
        self.host: PipelineHost | None = None
        self.job_refs: dict[str, JobRef] = {}
        """The jobs in flight, as events name them (dropped once judged: memory stays flat over a long run)."""
        self.latencies: dict[str, array[float]] = {}
        """Per step, the latencies of every job judged so far (its traces may be on disk by the end)."""
        self.job_latencies: array[float] = array("d")
        """Each job's end-to-end latency, of the jobs judged at their end (not early, not interrupted)."""
        self.settle: dict[str, float] = {}
        self.touched: set[str] = set()
        """Jobs with news since the loop last looked: the only candidates for judging."""

    # --- what the loop hands over ---------------------------------------------------------

    def apply(self, transitions: list[Transition]) -> None:
        for job, transition, order in self.tracker.apply(transitions):
            self.touched.add(job.job_id)
            self.emit(TransitionObserved(self.ref, self.job_ref(job), transition, order))

    def job_ref(self, job: JobResult) -> JobRef:
        ref = self.job_refs.get(job.job_id)
        if ref is None:
            ref = JobRef(job.ordinal, job.job_id, job.seeded.tenant_id, len(job.seeded.variants), job.seeded_mono)
            self.job_refs[job.job_id] = ref
        return ref

    def wake_times(self) -> list[float]:
        """When a job may become ready without news: its settle window ends, or its grace after a failure."""
        grace = self.scenario.timeouts.grace
        return [*self.settle.values(), *(at + grace for at in self.tracker.decisions().values())]

    # --- judging --------------------------------------------------------------------------

    def ready(self, now: float) -> None:
        """Judge every job that is ready; a job whose trace may miss writes (the observer catching up) waits."""
        observer = self.observer
        assert observer is not None
        grace = self.scenario.timeouts.grace
        due = [job_id for job_id, at in self.tracker.decisions().items() if now >= at + grace]
        candidates = self.touched | set(self.settle) | set(due)
        if not observer.caught_up:  # a trace may be missing writes made while the connection was gone: wait
            self.touched = candidates
            return
        self.touched = set()
        decisions = self.tracker.decisions()
        for job_id in candidates:
            job = self.tracker.unjudged_job(job_id)
            if job is None or not self.tracker.finished(job.job_id):
                self.settle.pop(job_id, None)  # the job row's lane started: the settle window waits for it
                if job is not None and self.tracker.decided(job_id, now, grace):
                    self._early(job, observer)
                continue
            if job_id in decisions and now < decisions[job_id] + grace and self.tracker.ended_failed(job_id):
                continue  # a step failed with no retries left: a retry over the limit may still come (woken at grace)
            self._when_settled(job, observer, now)

    def _when_settled(self, job: JobResult, observer: Observer, now: float) -> None:
        """A finished job: read once more, then judged when its row is where the definition says (or its settle
        window is over)."""
        if job.job_id not in self.settle:
            fresh = observer.refresh(job.job_id)
            if fresh is None:
                self.touched.add(job.job_id)
                return
            self.apply(fresh)
            if not self.tracker.finished(job.job_id):
                return
            self.settle[job.job_id] = min(now + self.settings.job_settle, job.seeded_mono + self.scenario.timeouts.job)
        acceptable = self.tracker.acceptable_job_states(job.job_id)
        rows = self._read(lambda: checks.job_rows(self.connection.writer, job.job_id))
        if acceptable and rows.state not in acceptable and now < self.settle[job.job_id]:
            return
        self._judge(job, rows, acceptable)

    def _early(self, job: JobResult, observer: Observer) -> None:
        """The job has failed for certain and its grace is over: judge it now, on what its rows show, rather
        than wait for the rest of its run (or its timeouts). Its final state and checks are not judged."""
        fresh = observer.refresh(job.job_id)
        if fresh is None:  # the connection is gone: judged once it is back and the trace is whole
            return
        self.apply(fresh)
        self._sequence_failures(job)
        self.emit(Note(self.ref, f"job {job.ordinal} judged {format_seconds(self.scenario.timeouts.grace)} after "
                                 f"its first failure (timeouts.grace); what it did later was not waited for"))
        self._conclude(job, early=True)

    def _sequence_failures(self, job: JobResult) -> None:
        """The job's trace problems, in the order they happened: the root cause first."""
        found = self.tracker.new_failures(job.job_id) + self.tracker.final_variant_failures(job.job_id)
        for failure in sorted(found, key=lambda f: (f.seen_mono is None, f.seen_mono or 0.0)):
            self.verdict.failed(failure)

    def _judge(self, job: JobResult, rows: checks.JobRows, acceptable: list[tuple[str, str]]) -> None:
        # The SQL checks read first: if the database goes away there, nothing is recorded and the job is judged
        # again after the reconnect.
        assert self.checks is not None
        sql_failures = self._read(lambda: checks.sql_checks(self.checks, self.scenario, job))
        del self.settle[job.job_id]
        state = rows.state
        job.final_state = state
        self._sequence_failures(job)  # reported once the traces are complete, so every diff is whole
        if acceptable and state not in acceptable:
            wanted = " or ".join(f"({s}, {st})" for s, st in acceptable)
            got = f"({state[0]}, {state[1]})" if state else "no job row"
            self.verdict.failed(messages.job_failure(self.scenario.name, job.ordinal, job.job_id,
                                                     FailureKind.JOB_FINAL_STATE,
                                                     f"job row ended {got}; expected {wanted}"))
        for failure in [*checks.integrity(rows, self.scenario, job), *sql_failures]:
            self.verdict.failed(failure)
        self._conclude(job)

    def _conclude(self, job: JobResult, early: bool = False) -> None:
        job.finished_at = datetime.now(timezone.utc)
        job.finished_mono = time.monotonic()
        if not early:  # a detection may still have come: only a job that ran to its end can miss one
            self.verdict.missing_detections(job)
            self.job_latencies.append(job_latency(job))
        job.retries = self.tracker.retries(job.job_id)
        job.outcome = Outcome.FAILED if job.failures else Outcome.PASSED
        self.done_with(job)
        if self.observer is not None:
            self.observer.untrack(job.job_id)

    def done_with(self, job: JobResult) -> None:
        """The job is judged: it is reported, measured, and no longer held in memory by the run."""
        self.tracker.mark_judged(job.job_id)
        self.emit(JobFinished(self.ref, self.job_ref(job), job.outcome, job.duration, len(job.failures)))
        add_latencies(self.latencies, job, frozenset(self.scenario.definition.job_names))
        self.job_refs.pop(job.job_id, None)
        self.result.jobs.judged(job)
        if self.host is not None and job.outcome == Outcome.PASSED:  # a failed job's rows stay driven
            self.host.scope.discard(job.job_id)

    def interrupted(self) -> None:
        """An interrupt: every job in flight is reported as it stood, interrupted."""
        for job in self.tracker.unjudged():
            for failure in self.tracker.new_failures(job.job_id):
                self.verdict.failed(failure)
            job.outcome = Outcome.INTERRUPTED
            self.done_with(job)

    @staticmethod
    def _read(read: Any) -> Any:  # type: ignore[misc]
        try:
            return read()
        except psycopg2.Error as exc:
            raise failures.describe(exc, "reading the job's rows") from None

"""What a run has found, and where each finding belongs: a job's failures, the scenario's, the detections it
expected, the error that stopped it, and the outcome they add up to."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import replace

from runner.durations import format_seconds
from runner.engine import messages
from runner.engine.events import AssertionFailed, Emitter, Note, ScenarioRef
from runner.engine.results import JobResult, Outcome, ScenarioResult, StepLatency, summarise
from runner.engine.tracker import Tracker
from runner.errors import YeRunError
from runner.outcomes import FailureKind
from runner.scenario.model import Scenario
from runner.trace import Failure


class Verdict:
    def __init__(self, scenario: Scenario, result: ScenarioResult, tracker: Tracker, emit: Emitter,
                 ref: ScenarioRef):
        self.scenario = scenario
        self.result = result
        self.tracker = tracker
        self.emit = emit
        self.ref = ref
        self.error: YeRunError | None = None
        """What stopped the run, if anything (its exit code is the scenario's)."""

    def failed(self, failure: Failure) -> None:
        """A job's failure goes to its job (or, declared in expect.detect, to its detections); others to the
        scenario; every one is an event as it is found, placed at the expectation it broke."""
        failure = messages.located(failure, self.scenario)
        job = self.tracker.unjudged_job(failure.job_id) if failure.job_id else None
        if job is None:
            self.result.failures.append(failure)
        elif self.scenario.expect.detection_for(failure.kind, failure.step, failure.creation_order):
            job.detected.append(failure)  # expect.detect: the checker was meant to catch this
            self.emit(Note(self.ref, f"detected, as expected: {failure.message}"))
            return
        else:
            job.failures.append(failure)
        self.emit(AssertionFailed(self.ref, failure))

    def errored(self, exc: YeRunError) -> None:
        """The scenario could not finish: its outcome is 'error' in every report, whatever was checked."""
        if self.error is None:
            self.error = exc
            self.result.error = str(exc)
        self.result.outcome = Outcome.ERROR

    def missing_detections(self, job: JobResult) -> None:
        """expect.detect: every declared detection must have happened in every job."""
        for index, detection in enumerate(self.scenario.expect.detect):
            if not any(detection.matches(f.kind, f.step, f.creation_order) for f in job.detected):
                missing = messages.job_failure(self.scenario.name, job.ordinal, job.job_id,
                                               FailureKind.DETECTION_MISSING,
                                               f"expected the checker to report {detection}; it did not")
                self.failed(replace(missing, expectation=f"$.expect.detect[{index}]"))

    def latency(self, latencies: dict[str, array[float]], job_latencies: Sequence[float] = ()) -> None:
        """The latency table, and expect.latency's limits (a step's own, else the default's) held to it; then the
        jobs end to end, and expect.job_latency's limits."""
        self.result.latency = summarise(latencies)
        for step, measured in self.result.latency.items():
            for level, limit, path in self.scenario.expect.latency_limits(step):
                self._held(f"{step}: {level}", getattr(measured, level), limit, measured.n, path, step)
        self.result.job_latency = StepLatency.of(job_latencies) if job_latencies else None
        measured_jobs = self.result.job_latency
        for level, limit in self.scenario.expect.job_latency.given() if measured_jobs else ():
            self._held(f"job end to end: {level}", getattr(measured_jobs, level), limit, measured_jobs.n,
                       f"$.expect.job_latency.{level}")

    def _held(self, what: str, actual: float, limit: float, n: int, path: str, step: str | None = None) -> None:
        if actual > limit:
            self.failed(Failure(FailureKind.LATENCY_LIMIT, f"{self.scenario.name} › {what} latency "
                                f"{format_seconds(actual)} is over the limit {format_seconds(limit)} (n={n})",
                                step=step, spent=actual, limit=limit, expectation=path))

    def outcome(self, stopped: bool) -> Outcome:
        """What the run adds up to: an error or a seed-only run as they are; else interrupted, failed or passed."""
        if self.result.outcome in (Outcome.ERROR, Outcome.SEEDED):
            return Outcome(self.result.outcome)
        if stopped:
            return Outcome.INTERRUPTED
        return Outcome.FAILED if self.result.jobs.has_failures() or self.result.failures else Outcome.PASSED

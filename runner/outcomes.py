"""How a run ends and how it fails: the two enums every layer, report and front end shares.

`Outcome` is ordered, best to worst, so the worst of many is one `max()`. `FailureKind` declares
every failure once: what it means, the expectation of a scenario it breaks (a JSON path, so a
failure can point at the line that declared it) and whether `expect.detect` may declare it. The
scenario schema's list of detectable kinds, the report schema's list and the docs' table are read
from it (tools/build_schemas.py; tests/test_outcomes.py keeps the docs in step).
"""

from __future__ import annotations

from collections.abc import Container
from enum import StrEnum


class Outcome(StrEnum):
    """How a scenario (or a job) ended; written as its value, compared by `ORDER` (worse is greater)."""

    PASSED = "passed"
    SEEDED = "seeded"
    NOT_RUN = "not_run"
    RUNNING = "running"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    ERROR = "error"
    FLAKY = "flaky"
    """Failed, then passed on a rerun (`--reruns N`): reported as such, never as a plain pass."""

    @property
    def rank(self) -> int:
        """Its place in `ORDER`: 0 is the best."""
        return ORDER.index(self)

    @property
    def passing(self) -> bool:
        """The verdict holds nothing wrong: passed, seeded (observe: false), or flaky (it passed on a rerun)."""
        return self in (Outcome.PASSED, Outcome.SEEDED, Outcome.FLAKY)

    def __lt__(self, other: object) -> bool:
        return self.rank < _rank(other)

    def __le__(self, other: object) -> bool:
        return self.rank <= _rank(other)

    def __gt__(self, other: object) -> bool:
        return self.rank > _rank(other)

    def __ge__(self, other: object) -> bool:
        return self.rank >= _rank(other)


ORDER = (Outcome.PASSED, Outcome.SEEDED, Outcome.FLAKY, Outcome.NOT_RUN, Outcome.RUNNING, Outcome.FAILED,
         Outcome.INTERRUPTED, Outcome.ERROR)
"""Best to worst: an interrupt hides more than a failure shows, and an error ends everything."""


def _rank(other: object) -> int:
    """A string is read as the outcome it names, never compared as text ('error' < 'passed' alphabetically)."""
    if not isinstance(other, str):
        raise TypeError(f"an outcome is compared with outcomes, not {type(other).__name__}")
    return Outcome(other).rank


class FailureKind(StrEnum):
    """One way a run fails: its name in every report, the expectation it breaks, what it means."""

    expectation: str
    """The JSON path of the scenario's expectation (or limit) a failure of this kind breaks."""
    description: str
    detectable: bool
    """Whether `expect.detect` may declare it (a per-job failure the checker reports)."""
    by_step: str
    """The step's own entry under the expectation, when the scenario may write one (`{step}` is replaced)."""

    def __new__(cls, value: str, expectation: str, description: str, detectable: bool = True,
                by_step: str = "") -> FailureKind:
        member = str.__new__(cls, value)
        member._value_ = value
        member.expectation, member.description = expectation, description
        member.detectable, member.by_step = detectable, by_step
        return member

    SKIPPED_STEP = "skipped_step", "$.expect.steps", "a row jumped past expected steps it never visited"
    OUT_OF_ORDER = ("out_of_order", "$.expect.steps", "a row reached a step before an earlier expected one (the job "
                    "row: before every variant was done)")
    BACKWARDS = "backwards", "$.expect.steps", "a row returned to a step it had left, not as a declared retry"
    UNKNOWN_STEP = "unknown_step", "$.expect.steps", "a row moved to a step the pipeline definition does not have"
    UNKNOWN_STATUS = "unknown_status", "$.expect.steps", "a row wrote a status the pipeline definition does not have"
    DUPLICATE_TERMINAL = ("duplicate_terminal", "$.expect.steps", "a row wrote the same done or failed state twice "
                          "in a row (on the job row: a job-level step run twice)")
    INCOMPLETE_STEP = "incomplete_step", "$.expect.steps", "a row left a step for another without reaching done"
    UNEXPECTED_STEP = "unexpected_step", "$.expect.steps", "a row visited a step the scenario does not expect"
    UNEXPECTED_FAILURE = ("unexpected_failure", "$.expect.failures", "a step failed where no failure is declared, "
                          "and no retry followed")
    RETRY_LIMIT = ("retry_limit", "$.expect.retries", "a step was retried more often than allowed", True,
                   "$.expect.retries.{step}")
    RETRIES_BELOW_MINIMUM = ("retries_below_minimum", "$.expect.retries", "a step was retried fewer times than "
                             "the declared minimum", True, "$.expect.retries.{step}")
    FINAL_STATE = "final_state", "$.expect.final.variant", "a variant ended in a state other than the expected one"
    EXPECTED_FAILURE_MISSING = ("expected_failure_missing", "$.expect.failures", "a required declared failure "
                                "did not happen")
    STEP_TIMEOUT = ("step_timeout", "$.timeouts.step", "a step took longer than its limit", True,
                    "$.timeouts.steps.{step}")
    STALL_TIMEOUT = "stall_timeout", "$.timeouts.stall", "a row made no transition for longer than the stall limit"
    JOB_TIMEOUT = "job_timeout", "$.timeouts.job", "a job did not reach its final state within its limit"
    JOB_FINAL_STATE = ("job_final_state", "$.expect.final.job", "the job row ended in a state other than the "
                       "expected one")
    VARIANT_COUNT = "variant_count", "$.variants", "the job has another number of variant rows than were seeded"
    SHARED_ASSET = ("shared_asset", "$.images", "the variants and the job input do not all share the seeded image "
                    "asset")
    SQL_CHECK = "sql_check", "$.expect.sql", "an SQL check did not return what it expects, or could not run"
    DETECTION_MISSING = ("detection_missing", "$.expect.detect", "a failure declared in expect.detect was not "
                         "reported", False)
    LATENCY_LIMIT = ("latency_limit", "$.expect.latency", "a step's latency (p50, p95, p99 or max), or the jobs' "
                     "end to end (expect.job_latency), is over its limit", False, "$.expect.latency.{step}")

    def path(self, step: str | None, written: Container[str]) -> str:
        """The path of what a failure at `step` broke: the step's own entry where the scenario wrote one."""
        if step and self.by_step:
            own = self.by_step.format(step=step)
            if own in written:
                return own
        return self.expectation

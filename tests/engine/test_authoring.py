"""Assertions authors asked for: retries with a minimum, and failures a scenario must detect."""

from __future__ import annotations

from pathlib import Path

from runner.db.connect import Database
from tests.engine.helpers import run

BASE = "simulate_img_gen: true\ntimeouts: {step: 20s, stall: 20s, job: 60s}\n"
RETRIED = "reference_pipeline: {faults: [{kind: fail_then_retry, step: overlay, variants: [2]}]}\n"


def test_a_retry_range_passes_when_the_retry_happens_and_fails_when_it_does_not(db: Database, tmp_path: Path):
    expect = "expect: {retries: {overlay: {min: 1, max: 1, variants: [2]}}}\n"
    retried = run(db, tmp_path, f"name: retried\n{BASE}{expect}{RETRIED}")
    assert retried.result.outcome == "passed", [f.text() for f in retried.result.all_failures]
    assert retried.result.jobs[0].retries == {2: {"overlay": 1}}
    without = run(db, tmp_path, f"name: no-fault\n{BASE}{expect}")
    assert without.kinds() == {"retries_below_minimum"}
    (failure,) = without.result.all_failures
    assert failure.creation_order == 2 and failure.message.endswith(
        "overlay: retried overlay 0 time(s); at least 1 expected")
    # The retry over the limit comes a back-off after the failure it retries: by then that failure had no
    # retries left, yet it is not the job's end (the job waits its grace before it is judged).
    too_many = run(db, tmp_path, f"name: twice\n{BASE}{expect}"
                                 "reference_pipeline: {retry_backoff: 300ms, faults: [{kind: fail_then_retry, "
                                 "step: overlay, times: 2}]}\n")
    assert "retry_limit" in too_many.kinds() and "unexpected_failure" not in too_many.kinds(), too_many.kinds()


DETECT = "expect: {detect: [{kind: skipped_step, step: yolo_detect, variants: [2]}]}\n"


def test_a_declared_detection_passes_only_when_exactly_it_happens(db: Database, tmp_path: Path):
    caught = run(db, tmp_path, f"name: canary\n{BASE}{DETECT}"
                               "reference_pipeline: {faults: [{kind: skip, step: yolo_detect, variants: [2]}]}\n")
    assert caught.result.outcome == "passed", [f.text() for f in caught.result.all_failures]
    (detected,) = caught.result.jobs[0].detected
    assert detected.kind == "skipped_step" and detected.creation_order == 2
    missing = run(db, tmp_path, f"name: canary-missing\n{BASE}{DETECT}")
    assert missing.kinds() == {"detection_missing"}
    assert missing.failure("detection_missing").message.endswith(
        "expected the checker to report skipped_step at yolo_detect for variant(s) #2; it did not")
    other = run(db, tmp_path, f"name: canary-other\n{BASE}{DETECT}"
                              "reference_pipeline: {faults: [{kind: skip, step: yolo_detect, variants: [3]}]}\n")
    assert other.kinds() == {"skipped_step", "detection_missing"}

"""Each fault the reference pipeline injects is caught with its own message; declared, it passes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runner.db.connect import Database
from runner.engine.events import Note
from tests.engine.helpers import retrying, run

BASE = "simulate_img_gen: true\ntimeouts: {step: 20s, stall: 20s, job: 60s}\n"

CAUGHT = {
    "fail": ("{kind: fail, step: ocr_eval, variants: [2]}", "unexpected_failure",
             "variant #2 (", "ocr_eval: failed at ocr_eval"),
    "fail_then_retry": ("{kind: fail_then_retry, step: vlm_judge, variants: [1]}", "retry_limit",
                        "variant #1 (", "vlm_judge: retried vlm_judge 1 time(s); 0 allowed"),
    "overlay_retry": ("{kind: fail_then_retry, step: overlay, variants: [3]}", "retry_limit",
                      "variant #3 (", "overlay: retried overlay 1 time(s); 0 allowed"),
    "skip": ("{kind: skip, step: yolo_detect, variants: [2]}", "skipped_step",
             "variant #2 (", "yolo_detect: skipped yolo_detect (went from vlm_analyze straight to planner)"),
    "backwards": ("{kind: backwards, step: overlay, to: yolo_detect, variants: [1]}", "backwards",
                  "variant #1 (", "yolo_detect: returned to yolo_detect after overlay (not a declared retry)"),
    "duplicate": ("{kind: duplicate, step: planner, variants: [3]}", "duplicate_terminal",
                  "variant #3 (", "planner: wrote (planner, done) twice in a row"),
}

DECLARED = {
    "fail": ("{kind: fail, step: ocr_eval, variants: [2]}",
             "expect: {failures: [{step: ocr_eval, variants: [2]}], final: {job: {step: ocr_eval, status: failed}}}"),
    "fail_then_retry": ("{kind: fail_then_retry, step: vlm_judge, times: 2}", "expect: {retries: {vlm_judge: 2}}"),
    "overlay_retry": ("{kind: fail_then_retry, step: overlay}", "expect: {retries: {overlay: 1}}"),
    "skip": ("{kind: skip, step: yolo_detect}",
             "expect: {steps: [img_gen, vlm_analyze, planner, overlay, vlm_judge, ocr_eval, readability_eval, iou_eval]}"),
    "partial": ("{kind: skip, step: iou_eval}", "expect: {stop_after: readability_eval, final: {job: "
                                               "{step: readability_eval, status: done}}}"),
    "optional_failure": ("{kind: fail, step: ocr_eval, variants: [2]}",
                         "expect: {failures: [{step: ocr_eval, required: false}]}"),
}


RACING = {"fail_then_retry", "overlay_retry"}
"""An undeclared retry: the failure alone already decides the job (no retry allowed), so the job may be judged
before the pipeline's retry is seen; either way it fails, as an unexpected failure or as too many retries."""


@pytest.mark.parametrize("name", sorted(CAUGHT))
def test_fault_is_caught_with_its_message(db: Database, tmp_path: Path, name: str):
    fault, kind, who, what = CAUGHT[name]
    outcome = run(db, tmp_path, f"name: {name}\n{BASE}reference_pipeline: {{faults: [{fault}]}}\n")
    assert outcome.result.outcome == "failed"
    if name in RACING and outcome.kinds() == {"unexpected_failure"}:
        kind, what = "unexpected_failure", f"failed at {what.split(':')[0]}"
    assert outcome.kinds() == {kind}, [f.text() for f in outcome.result.all_failures]
    failure = outcome.failure(kind)
    job = outcome.result.jobs[0]
    assert failure.message.startswith(f"{name} › job 1 ({job.job_id}) › {who}")
    assert failure.message.endswith(what)
    assert "expected (-) vs observed (+):" in failure.detail and "time at" in failure.detail


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_declared_fault_passes(db: Database, tmp_path: Path, name: str):
    fault, expect = DECLARED[name]
    outcome = run(db, tmp_path, f"name: {name}\n{BASE}{expect}\nreference_pipeline: {{faults: [{fault}]}}\n")
    assert outcome.result.outcome == "passed", [f.text() for f in outcome.result.all_failures]


def test_required_failure_that_does_not_happen_fails(db: Database, tmp_path: Path):
    outcome = run(db, tmp_path, f"name: missing\n{BASE}expect: {{failures: [{{step: ocr_eval, variants: [2]}}]}}\n")
    assert "expected_failure_missing" in outcome.kinds()
    assert outcome.failure("expected_failure_missing").message.endswith(
        "ocr_eval: was expected to fail at ocr_eval, but ended (iou_eval, done)")


def test_hang_times_out_on_time(db: Database, tmp_path: Path):
    started = time.monotonic()
    outcome = run(db, tmp_path, "name: hang\nsimulate_img_gen: true\ntimeouts: {step: 1s, stall: 30s, job: 60s}\n"
                                "reference_pipeline: {faults: [{kind: hang, step: planner, variants: [1]}]}\n")
    elapsed = time.monotonic() - started
    assert outcome.kinds() == {"step_timeout"}
    failure = outcome.failure("step_timeout")
    assert failure.message.endswith("planner: did not finish within 1s (now planner running)")
    assert failure.spent >= 1.0 and failure.limit == 1.0
    assert 1.0 <= elapsed < 60  # ended by the step limit, not the job limit
    assert outcome.result.jobs[0].outcome == "failed"


def test_stall_is_caught_when_only_the_sweep_would_move_on(db: Database, tmp_path: Path):
    text = ("name: stall\nsimulate_img_gen: true\ntimeouts: {step: 30s, stall: 1s, job: 60s}\n"
            "reference_pipeline: {sweep: 20s, faults: [{kind: stall_notify, step: yolo_detect, variants: [2]}]}\n")
    outcome = run(db, tmp_path, text)
    assert outcome.kinds() == {"stall_timeout"}
    assert outcome.failure("stall_timeout").message.endswith(
        "yolo_detect: no transition for 1s (stalled at yolo_detect done)")


def test_stall_notify_passes_when_the_sweep_is_within_the_stall_limit(db: Database, tmp_path: Path):
    text = ("name: stall-ok\nsimulate_img_gen: true\ntimeouts: {step: 30s, stall: 20s, job: 60s}\n"
            "reference_pipeline: {sweep: 300ms, faults: [{kind: stall_notify, step: yolo_detect}]}\n")
    outcome = run(db, tmp_path, text)
    assert outcome.result.outcome == "passed", [f.text() for f in outcome.result.all_failures]


def test_job_timeout_names_the_unfinished_variants(db: Database, tmp_path: Path):
    text = ("name: job-limit\nsimulate_img_gen: true\ntimeouts: {step: 30s, stall: 30s, job: 1s}\n"
            "reference_pipeline: {faults: [{kind: hang, step: overlay, variants: [2, 3]}]}\n")
    outcome = run(db, tmp_path, text)
    assert outcome.kinds() == {"job_timeout"}
    assert "unfinished variants: #2 at overlay running, #3 at overlay running" in outcome.failure("job_timeout").message


def test_crashed_pipeline_is_restarted_and_the_run_passes(db: Database, tmp_path: Path):
    outcome = run(db, tmp_path, f"name: crash\n{BASE}reference_pipeline: {{faults: [{{kind: crash, step: planner, "
                                "variants: [2]}]}\n")
    assert outcome.result.outcome == "passed", [f.text() for f in outcome.result.all_failures]
    assert outcome.result.pipeline_restarts == 1
    variant = outcome.result.jobs[0].variants[outcome.result.jobs[0].seeded.variant(2).id]
    assert [t.state for t in variant.transitions].count(("planner", "running")) == 2


def test_every_failure_of_a_run_is_reported(db: Database, tmp_path: Path):
    faults = ("[{kind: skip, step: yolo_detect, variants: [1]}, {kind: duplicate, step: planner, variants: [2]}, "
              "{kind: fail, step: ocr_eval, variants: [3]}]")
    outcome = run(db, tmp_path, f"name: many\n{BASE}reference_pipeline: {{faults: {faults}}}\n")
    assert outcome.kinds() == {"skipped_step", "duplicate_terminal", "unexpected_failure"}
    assert {f.creation_order for f in outcome.result.all_failures} == {1, 2, 3}


RETRIED = ("expect: {retries: {overlay: {min: 1, max: 1, variants: [2]}}}\n"
           "reference_pipeline: {faults: [{kind: fail_then_retry, step: overlay, variants: [2]}]}\n")


def test_a_retry_back_to_the_seeded_state_is_a_declared_retry(db: Database, tmp_path: Path):
    """Issue 18, item 4: the pipeline started variant #2 over, as its definition says, and the checker called it
    going backwards. No simulate_img_gen: the reference pipeline runs img_gen again, as a YE part would."""
    text = f"name: start-over\ntimeouts: {{step: 20s, stall: 20s, job: 60s}}\n{RETRIED}"
    outcome = run(db, tmp_path, text, definition=retrying("overlay", ("user_img_input", "done")))
    assert outcome.result.outcome == "passed", [f.text() for f in outcome.result.all_failures]
    job = outcome.result.jobs[0]
    states = [t.state for t in job.variants[job.seeded.variant(2).id].transitions]
    back = states.index(("overlay", "failed")) + 1
    assert states[back:back + 3] == [("user_img_input", "done"), ("img_gen", "running"), ("img_gen", "done")]
    assert job.retries == {2: {"overlay": 1}}


def test_a_retry_to_an_earlier_step_queued_is_picked_up(db: Database, tmp_path: Path):
    """A retry to (planner, queued) left the variant waiting for its timeout: the reference pipeline only
    resumed queued rows at the failed step itself."""
    text = f"name: planner-again\n{BASE}{RETRIED}"  # broken, the variant waits out its step limit: a failure
    outcome = run(db, tmp_path, text, definition=retrying("overlay", ("planner", "queued")))
    assert outcome.result.outcome == "passed", [f.text() for f in outcome.result.all_failures]
    job = outcome.result.jobs[0]
    states = [t.state for t in job.variants[job.seeded.variant(2).id].transitions]
    back = states.index(("overlay", "failed")) + 1
    assert states[back:back + 3] == [("planner", "queued"), ("planner", "running"), ("planner", "done")]


def test_a_decided_failure_is_judged_after_the_grace_not_at_a_timeout(db: Database, tmp_path: Path):
    """Variants 1 and 3 go past the last expected step at once; variant 2 hangs before it (at yolo_detect), so the
    job never finishes on its own. It is judged a grace after the first failure, root cause first, not when
    yolo_detect's 10-minute limit runs out. (A hang after the last expected step would race: a job whose
    variants all reached it may be judged, as passed, before a write past it arrives — stop_after's scope.)"""
    text = ("name: decided\nsimulate_img_gen: true\nexpect: {stop_after: planner}\n"
            "timeouts: {step: 10m, stall: 10m, job: 30m, grace: 300ms}\n"
            "reference_pipeline: {faults: [{kind: hang, step: yolo_detect, variants: [2]}]}\n")
    outcome = run(db, tmp_path, text)
    (job,) = outcome.result.jobs
    assert job.outcome == "failed"
    assert {f.kind for f in job.failures} == {"unexpected_step"}  # no step or stall timeout: nothing waited for it
    assert "went past planner, the last expected step" in job.failures[0].message
    assert [f.seen_mono for f in job.failures] == sorted(f.seen_mono for f in job.failures)
    notes = [e.text for e in outcome.events if isinstance(e, Note)]
    assert any(n.startswith("job 1 judged 300ms after its first failure") for n in notes), notes


def test_going_backwards_is_judged_at_once_too(db: Database, tmp_path: Path):
    text = ("name: backwards-then-hang\nsimulate_img_gen: true\ntimeouts: {step: 10m, stall: 10m, grace: 300ms}\n"
            "reference_pipeline: {faults: [{kind: backwards, step: overlay, to: yolo_detect, variants: [1]},\n"
            "                              {kind: hang, step: vlm_judge, variants: [2]}]}\n")
    outcome = run(db, tmp_path, text)
    (job,) = outcome.result.jobs
    assert job.failures and job.failures[0].kind == "backwards"
    assert not {"step_timeout", "stall_timeout", "job_timeout"} & {f.kind for f in job.failures}

"""The trace checker on exact traces: each failure kind has its own message; legal traces pass."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest

from runner.definition import DEFAULT, Definition, Step
from runner.engine.asserts import final_problems, walk
from runner.trace import Transition
from runner.scenario.model import Expectations, State
from tests.db.helpers import load
from tests.engine.helpers import retrying
from tests.pipeline.rig import full_trace

NOW = datetime(2026, 11, 26, tzinfo=timezone.utc)


def trace(states: list[tuple[str, str]]) -> list[Transition]:
    return [Transition("v", "j", "v", s, st, NOW, NOW, float(i)) for i, (s, st) in enumerate(states)]


def expectations(tmp_path: Path, text: str = "") -> Expectations:
    return load(tmp_path, "name: t\n" + text).expect


def kinds(states, expect: Expectations, order: int = 1, start: str = "user_img_input",
          definition: Definition = DEFAULT) -> list[tuple[str, str | None]]:
    state = walk(trace(states), expect, order, start, definition)
    problems = state.problems + final_problems(state, expect, order)
    return [(p.kind, p.step) for p in problems]


def test_normal_trace_passes_and_finishes(tmp_path: Path):
    expect = expectations(tmp_path)
    state = walk(trace(full_trace()), expect, 1, "user_img_input")
    assert state.problems == [] and state.finished and state.outcome == "completed"
    assert final_problems(state, expect, 1) == []


def test_queued_states_are_legal(tmp_path: Path):
    states = full_trace(until="img_gen") + [("vlm_analyze", "queued")] + full_trace(start="img_gen")[1:]
    assert kinds(states, expectations(tmp_path)) == []


def test_unfinished_trace_is_not_finished(tmp_path: Path):
    state = walk(trace(full_trace(until="planner")), expectations(tmp_path), 1, "user_img_input")
    assert not state.finished and state.position == 3 and state.current == ("planner", "done")


def test_skipped_step(tmp_path: Path):
    states = [s for s in full_trace() if s[0] != "yolo_detect"]
    state = walk(trace(states), expectations(tmp_path), 1, "user_img_input")
    (problem,) = state.problems
    assert (problem.kind, problem.step) == ("skipped_step", "yolo_detect")
    assert problem.what == "skipped yolo_detect (went from vlm_analyze straight to planner)"


def test_out_of_order_is_one_failure_not_a_skip_and_a_backwards(tmp_path: Path):
    head = full_trace(until="vlm_analyze")
    states = head + [("planner", "running"), ("planner", "done"), ("yolo_detect", "running"),
                     ("yolo_detect", "done")] + full_trace(start="planner")[1:]
    assert kinds(states, expectations(tmp_path)) == [("out_of_order", "planner")]


def test_backwards(tmp_path: Path):
    head = full_trace(until="overlay")
    states = head + [("yolo_detect", "running"), ("yolo_detect", "done"), ("planner", "running"),
                     ("planner", "done"), ("overlay", "running"), ("overlay", "done")] + full_trace(start="overlay")[1:]
    found = kinds(states, expectations(tmp_path))
    assert found[0] == ("backwards", "yolo_detect")


def test_unknown_step_and_status(tmp_path: Path):
    states = full_trace(until="planner") + [("upscale", "running"), ("planner", "exploded")]
    assert kinds(states, expectations(tmp_path))[:2] == [("unknown_step", "upscale"), ("unknown_status", "planner")]


def test_duplicate_terminal_but_not_duplicate_running(tmp_path: Path):
    head = full_trace(until="planner")
    states = head + [("planner", "done")] + full_trace(start="planner")[1:]
    assert kinds(states, expectations(tmp_path)) == [("duplicate_terminal", "planner")]
    resumed = full_trace(until="planner")[:-1] + [("planner", "running"), ("planner", "done")] + \
        full_trace(start="planner")[1:]
    assert kinds(resumed, expectations(tmp_path)) == []


def test_a_job_level_step_done_twice_on_the_job_row_is_named_a_duplicate_trigger(tmp_path: Path):
    """The deployment starts ad_copy_gen_kor from two paths, so it runs twice: said plainly on the job row."""
    lane = Expectations(steps=DEFAULT.job_names, final_variant=State("instagram_feed_gen"), final_job=None)
    states = [("iou_eval", "done"), ("ad_copy_gen_kor", "done"), ("ad_copy_gen_kor", "done"),
              ("instagram_feed_gen", "done")]
    state = walk(trace(states), lane, 0, "iou_eval")
    assert [(p.kind, p.step, p.what) for p in state.problems] == [
        ("duplicate_terminal", "ad_copy_gen_kor", "ad_copy_gen_kor ran twice: a duplicate trigger?")]
    failed_twice = walk(trace(states[:1] + [("ad_copy_gen_kor", "failed")] * 2), lane, 0, "iou_eval")
    assert failed_twice.problems[0].what == "wrote (ad_copy_gen_kor, failed) twice in a row"
    variant = walk(trace(full_trace(until="planner") + [("planner", "done")]), expectations(tmp_path), 1,
                   "user_img_input")
    assert variant.problems[0].what == "wrote (planner, done) twice in a row"


def test_unexpected_failure_and_declared_failure(tmp_path: Path):
    states = full_trace(until="ocr_eval")[:-1] + [("ocr_eval", "failed")]
    state = walk(trace(states), expectations(tmp_path), 2, "user_img_input")
    assert [(p.kind, p.step) for p in state.problems] == [("unexpected_failure", "ocr_eval")]
    assert state.finished and state.outcome == "failed"
    declared = expectations(tmp_path, "expect: {failures: [{step: ocr_eval, variants: [2]}]}\n")
    ok = walk(trace(states), declared, 2, "user_img_input")
    assert ok.problems == [] and ok.finished and final_problems(ok, declared, 2) == []
    other = walk(trace(full_trace()), declared, 2, "user_img_input")
    assert [(p.kind, p.step) for p in final_problems(other, declared, 2)] == [("expected_failure_missing", "ocr_eval")]
    assert final_problems(walk(trace(full_trace()), declared, 1, "user_img_input"), declared, 1) == []


def test_optional_failure_accepts_both_outcomes(tmp_path: Path):
    expect = expectations(tmp_path, "expect: {failures: [{step: ocr_eval, required: false}]}\n")
    failed = full_trace(until="ocr_eval")[:-1] + [("ocr_eval", "failed")]
    for states in (failed, full_trace()):
        state = walk(trace(states), expect, 1, "user_img_input")
        assert state.problems == [] and final_problems(state, expect, 1) == []


def test_retries_within_and_beyond_the_limit(tmp_path: Path):
    retry = [("vlm_judge", "running"), ("vlm_judge", "failed"), ("vlm_judge", "queued")]
    states = full_trace(until="overlay") + retry * 2 + [("vlm_judge", "running"), ("vlm_judge", "done")] + \
        full_trace(start="vlm_judge")[1:]
    assert kinds(states, expectations(tmp_path, "expect: {retries: {vlm_judge: 2}}\n")) == []
    assert kinds(states, expectations(tmp_path, "expect: {retries: {vlm_judge: 1}}\n")) == [("retry_limit", "vlm_judge")]
    assert kinds(states, expectations(tmp_path)) == [("retry_limit", "vlm_judge")]


def test_overlay_retry_through_planner_done(tmp_path: Path):
    states = full_trace(until="planner") + [("overlay", "running"), ("overlay", "failed"), ("planner", "done"),
                                            ("overlay", "running"), ("overlay", "done")] + full_trace(start="overlay")[1:]
    assert kinds(states, expectations(tmp_path, "expect: {retries: {overlay: 1}}\n")) == []
    assert ("retry_limit", "overlay") in kinds(states, expectations(tmp_path))


def test_failure_with_retries_left_but_never_retried(tmp_path: Path):
    expect = expectations(tmp_path, "expect: {retries: {ocr_eval: 1}}\n")
    states = full_trace(until="ocr_eval")[:-1] + [("ocr_eval", "failed")]
    state = walk(trace(states), expect, 1, "user_img_input")
    assert state.problems == [] and not state.finished
    assert [p.kind for p in final_problems(state, expect, 1)] == ["unexpected_failure"]


def test_partial_pipeline_and_going_past_it(tmp_path: Path):
    expect = expectations(tmp_path, "expect: {stop_after: planner}\n")
    state = walk(trace(full_trace(until="planner")), expect, 1, "user_img_input")
    assert state.finished and state.problems == []
    beyond = full_trace(until="overlay")
    assert kinds(beyond, expect)[0] == ("unexpected_step", "overlay")


def test_incomplete_step(tmp_path: Path):
    states = full_trace(until="planner")[:-1] + [("overlay", "running"), ("overlay", "done")] + \
        full_trace(start="overlay")[1:]
    assert kinds(states, expectations(tmp_path)) == [("incomplete_step", "planner")]


def test_final_state_mismatch(tmp_path: Path):
    expect = expectations(tmp_path, "expect: {final: {variant: {step: iou_eval, status: failed}}}\n")
    state = walk(trace(full_trace()), expect, 1, "user_img_input")
    assert [p.what for p in final_problems(state, expect, 1)] == ["ended (iou_eval, done); expected (iou_eval, failed)"]


def test_a_wrong_final_state_is_a_final_state_failure_at_the_step_it_ended(tmp_path: Path):
    expect = expectations(tmp_path, "expect: {final: {variant: {step: iou_eval, status: failed}}}\n")
    state = walk(trace(full_trace()), expect, 1, "user_img_input")
    assert [(p.kind, p.step) for p in final_problems(state, expect, 1)] == [("final_state", "iou_eval")]

@pytest.mark.parametrize("start", ["user_img_input", "img_gen"])
def test_start_states(tmp_path: Path, start: str):
    expect = expectations(tmp_path, f"start: {start}\n")
    assert kinds(full_trace(start), expect, start=start) == []


def test_a_forward_jump_seen_only_by_a_reconciling_read_is_a_gap_not_a_skip(tmp_path: Path):
    states = full_trace(until="vlm_analyze") + [("planner", "done")] + full_trace(start="planner")[1:]
    transitions = trace(states)
    jump = len(full_trace(until="vlm_analyze"))
    transitions[jump] = Transition("v", "j", "v", "planner", "done", NOW, NOW, float(jump), source="reconcile")
    state = walk(transitions, expectations(tmp_path), 1, "user_img_input")
    assert state.problems == [] and state.gaps == 1 and state.finished
    assert kinds(states, expectations(tmp_path)) == [("skipped_step", "yolo_detect")]  # seen by NOTIFY: a skip


START_OVER = retrying("overlay", ("user_img_input", "done"))
"""A deployment that retries a failed overlay from the very start ("start this variant over")."""
OVERLAY_FAILS = [("overlay", "running"), ("overlay", "failed")]


def test_a_declared_retry_back_to_the_seeded_state_starts_the_walk_over(tmp_path: Path):
    """Issue 18, item 4: it was reported as going backwards; it is a retry, counted against the limit."""
    states = full_trace(until="planner") + OVERLAY_FAILS + full_trace()
    allowed = expectations(tmp_path, "expect: {retries: {overlay: 1}}\n")
    state = walk(trace(states), allowed, 1, "user_img_input", START_OVER)
    assert state.problems == [] and state.finished and state.retries == {"overlay": 1}
    assert final_problems(state, allowed, 1) == []
    undeclared = walk(trace(states), expectations(tmp_path), 1, "user_img_input", START_OVER)
    assert [(p.kind, p.what) for p in undeclared.problems] == [("retry_limit", "retried overlay 1 time(s); 0 allowed")]
    twice = full_trace(until="planner") + OVERLAY_FAILS + full_trace(until="planner") + OVERLAY_FAILS + full_trace()
    assert [p.what for p in walk(trace(twice), allowed, 1, "user_img_input", START_OVER).problems] == [
        "retried overlay 2 time(s); 1 allowed"]
    assert ("backwards", "img_gen") in kinds(states, allowed)  # without the rule it is not a retry


def test_a_retry_back_before_the_start_walks_the_steps_up_to_the_start_again(tmp_path: Path):
    """A variant seeded at img_gen and retried from user_img_input runs img_gen again, in order."""
    expect = expectations(tmp_path, "start: img_gen\nexpect: {retries: {overlay: 1}}\n")
    failed = full_trace(start="img_gen", until="planner") + OVERLAY_FAILS
    assert kinds(failed + full_trace(), expect, start="img_gen", definition=START_OVER) == []
    straight_on = failed + [("user_img_input", "done")] + full_trace(start="img_gen")[1:]
    state = walk(trace(straight_on), expect, 1, "img_gen", START_OVER)
    assert [(p.kind, p.what) for p in state.problems] == [
        ("skipped_step", "skipped img_gen (went from user_img_input straight to vlm_analyze)")]


def test_a_retry_to_an_earlier_queued_step_resumes_there(tmp_path: Path):
    states = full_trace(until="planner") + OVERLAY_FAILS + [("planner", "queued"), ("planner", "running"),
                                                            ("planner", "done")] + full_trace(start="planner")[1:]
    again = retrying("overlay", ("planner", "queued"))
    assert kinds(states, expectations(tmp_path, "expect: {retries: {overlay: 1}}\n"), definition=again) == []


class Name(str):
    """A step name whose every comparison is a Python call, so a profiler counts the checker's work."""

    __hash__ = str.__hash__

    def __eq__(self, other: object) -> bool:
        return str.__eq__(self, other)


def long_pipeline(steps: int) -> tuple[Definition, Expectations, list[Transition]]:
    """A definition of `steps` variant steps (built in Python: files stop at 200) and a variant walking it."""
    names = [f"s{i}" for i in range(steps)]
    definition = Definition(variant_steps=tuple(Step(n) for n in names), seed_states=(names[0],))
    expect = Expectations(steps=tuple(names[1:]), final_variant=State(names[-1], "done"), final_job=None)
    states = [(names[0], "done")] + [(n, status) for n in names[1:] for status in ("running", "done")]
    return definition, expect, [Transition("v", "j", "v", Name(s), st, NOW, NOW, float(i))
                                for i, (s, st) in enumerate(states)]


def calls(work: Callable[[], object]) -> int:
    """The Python calls `work` makes (a step-name comparison is one): work measured without a clock."""
    count = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal count
        count += event == "call"

    sys.setprofile(profile)
    try:
        work()
    finally:
        sys.setprofile(None)
    return count


def test_the_checker_does_linear_work_in_the_number_of_steps():
    """Issue 18, item 13: looking expected steps up in a list made one walk quadratic; four times the steps
    must cost about four times the work, not sixteen."""
    def work(steps: int) -> int:
        definition, expect, transitions = long_pipeline(steps)
        state = None

        def run() -> None:
            nonlocal state
            state = walk(transitions, expect, 1, "s0", definition)
        spent = calls(run)
        assert state is not None and state.finished and state.problems == []
        return spent

    small, large = work(100), work(400)
    assert large < 5 * small, (small, large)

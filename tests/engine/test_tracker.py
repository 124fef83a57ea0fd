"""Following a run's jobs: every transition is taken once, as it arrives."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from runner.db.registry import SeededJob, SeededVariant
from runner.engine.results import JobResult
from runner.engine.tracker import Tracker
from runner.scenario import loader
from runner.trace import Transition, VariantTrace
from tests.conftest import scenario_file
from tests.engine.test_asserts import calls, long_pipeline

NOW = datetime(2026, 11, 26, tzinfo=timezone.utc)


def test_following_a_long_trace_transition_by_transition_does_linear_work(tmp_path: Path):
    """Issue 18, item 13: re-walking a variant's whole trace at each transition made following it quadratic (a
    2,000-step variant took 37 s of CPU); four times the steps must cost about four times the work."""
    def work(steps: int) -> int:
        definition, _, transitions = long_pipeline(steps)
        scenario = loader.load(scenario_file(tmp_path, f"name: long{steps}\n"), definition)
        tracker = Tracker(scenario)
        seeded = SeededJob(1, "j", "ye_t_test", "a", (SeededVariant("v", 1),), ())
        job = JobResult(seeded, NOW, 0.0, {"v": VariantTrace("v", 1)})
        tracker.add(job)
        spent = calls(lambda: [tracker.apply([t]) for t in transitions])
        assert tracker.finished("j") and tracker.new_failures("j") == []
        return spent

    small, large = work(100), work(400)
    assert large < 5 * small, (small, large)


def test_a_retried_variant_fed_transition_by_transition_is_judged_like_its_whole_trace(tmp_path: Path):
    """Skipped steps seen later make the jump out of order, whether the trace arrives at once or bit by bit."""
    scenario = loader.load(scenario_file(tmp_path, "name: late\nsimulate_img_gen: true\n"))
    states = [("user_img_input", "done"), ("img_gen", "running"), ("img_gen", "done"), ("yolo_detect", "done"),
              ("vlm_analyze", "done"), ("planner", "done")]
    tracker = Tracker(scenario)
    seeded = SeededJob(1, "j", "ye_t_test", "a", (SeededVariant("v", 1),), ())
    tracker.add(JobResult(seeded, NOW, 0.0, {"v": VariantTrace("v", 1)}))
    for i, (step, status) in enumerate(states):
        tracker.apply([Transition("v", "j", "v", step, status, NOW, NOW, float(i))])
    (failure,) = tracker.new_failures("j")
    assert failure.kind == "out_of_order" and failure.message.endswith("reached yolo_detect before vlm_analyze")
    assert failure.step == "yolo_detect"

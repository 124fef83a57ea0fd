"""Which scenarios only ye-run's reference pipeline can run, and why (they are not run elsewhere)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.engine.applicable import not_run_here, reference_only
from runner.scenario import loader
from tests.conftest import scenario_file

CASES = [
    ("reference_pipeline: {faults: [{kind: skip, step: planner}]}\n", "injects faults into the reference pipeline"),
    ("expect: {stop_after: planner}\nreference_pipeline: {stop_after: planner}\n", "stops the reference pipeline"),
    ("start: user_img_input\nreference_pipeline: {with_ye: true}\n", "needs the YE part to run img_gen"),
    ("start: img_gen\n", "a notify trigger fires on UPDATE only"),
]


@pytest.mark.parametrize("text, reason", CASES)
def test_what_only_the_reference_pipeline_does(tmp_path: Path, text: str, reason: str):
    scenario = loader.load(scenario_file(tmp_path, "name: s\n" + text))
    assert reason in (reference_only(scenario) or "")
    assert not_run_here(scenario, reference_pipeline=True) is None
    assert (not_run_here(scenario, reference_pipeline=False) or "").startswith("not run: ")


@pytest.mark.parametrize("text", ["simulate_img_gen: true\n", "start: user_img_input\n",
                                  "reference_pipeline: {latency: {default: 10ms}, sweep: 1s}\n"])
def test_what_any_pipeline_can_run(tmp_path: Path, text: str):
    scenario = loader.load(scenario_file(tmp_path, "name: s\n" + text))
    assert reference_only(scenario) is None and not_run_here(scenario, reference_pipeline=False) is None

"""Scale and soak runs: slow, so outside the default run (`pytest -m slow`). Figures live in bench/."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.db.connect import Database
from tests.engine.helpers import run


@pytest.mark.slow
def test_two_hundred_jobs_in_interval_mode_are_all_observed_completely(db: Database, tmp_path: Path):
    outcome = run(db, tmp_path, "name: scale\nsimulate_img_gen: true\n"
                                "mode: {type: interval, jobs: 200, interval: 10ms, max_in_flight: 50}\n"
                                "timeouts: {step: 2m, stall: 2m, job: 10m}\ncleanup: always\n")
    result = outcome.result
    assert result.outcome == "passed", [f.text() for f in result.all_failures][:3]
    assert len(result.jobs) == 200 and all(job.outcome == "passed" for job in result.jobs)
    assert all(len(trace.transitions) == 19 for job in result.jobs for trace in job.variants.values())
    assert result.cleanup is not None and result.cleanup.counts["jobs"] == 200


@pytest.mark.slow
def test_soak_a_minute_of_jobs_with_latency_and_faults(db: Database, tmp_path: Path):
    outcome = run(db, tmp_path, "name: soak\nsimulate_img_gen: true\nvariants: 3\n"
                                "mode: {type: interval, duration: 60s, interval: 200ms, max_in_flight: 20}\n"
                                "expect: {retries: {overlay: 1}}\ncleanup: always\n"
                                "reference_pipeline: {latency: {default: {lognormal: {median: 20ms, sigma: 0.5}}}, "
                                "faults: [{kind: fail_then_retry, step: overlay, probability: 0.2}, "
                                "{kind: stall_notify, step: planner, probability: 0.1}], sweep: 500ms}\n")
    result = outcome.result
    assert result.outcome == "passed", [f.text() for f in result.all_failures][:3]
    assert len(result.jobs) >= 100

"""Modes end to end on a real database with the reference pipeline."""

from __future__ import annotations

import contextlib
from pathlib import Path

from runner.db.connect import Database
from tests.db.helpers import count, rows
from tests.engine.helpers import run


def test_once(db: Database, tmp_path: Path):
    outcome = run(db, tmp_path, "name: once\nsimulate_img_gen: true\n")
    result = outcome.result
    assert result.outcome == "passed", [f.text() for f in result.all_failures]
    (job,) = result.jobs
    assert job.outcome == "passed" and job.final_state == ("instagram_feed_gen", "done")
    assert all(len(t.transitions) == 19 for t in job.variants.values())
    assert [t.state for t in job.job_trace][-3:] == [("iou_eval", "done"), ("ad_copy_gen_kor", "done"),
                                                     ("instagram_feed_gen", "done")]
    assert result.observation.method == "history" and result.observation.complete
    assert set(result.latency) == {"img_gen", "vlm_analyze", "yolo_detect", "planner", "overlay", "vlm_judge",
                                   "ocr_eval", "readability_eval", "iou_eval", "ad_copy_gen_kor", "instagram_feed_gen"}
    assert result.latency["ad_copy_gen_kor"].n == 1  # measured on the job row, once per job


def test_wait_for_completion_creates_each_job_after_the_previous_finished(db: Database, tmp_path: Path):
    outcome = run(db, tmp_path, "name: wfc\nsimulate_img_gen: true\nmode: {type: wait_for_completion, jobs: 3}\n"
                                "reference_pipeline: {latency: {default: 5ms}}\n")
    jobs = outcome.result.jobs
    assert outcome.result.outcome == "passed" and len(jobs) == 3
    for previous, job in zip(jobs, jobs[1:]):
        assert job.seeded_mono >= previous.finished_mono


def test_interval_creates_jobs_regardless_and_caps_those_in_flight(db: Database, tmp_path: Path):
    text = ("name: interval\nsimulate_img_gen: true\nmode: {type: interval, jobs: 4, interval: 50ms, "
            "max_in_flight: 2}\nreference_pipeline: {latency: {default: 30ms}}\n")
    outcome = run(db, tmp_path, text)
    jobs = outcome.result.jobs
    assert outcome.result.outcome == "passed" and len(jobs) == 4
    spans = [(j.seeded_mono, j.finished_mono) for j in jobs]
    overlap = max(sum(1 for s, e in spans if s <= moment < e) for moment, _ in spans)
    assert overlap == 2  # a job is created before the previous one finished, never more than 2 at once
    assert outcome.result.delayed_creations >= 1


def test_duration_bounds_job_creation(db: Database, tmp_path: Path):
    # 2 s: room for a second job (about 0.15 s each here) on a loaded machine too
    text = ("name: duration\nsimulate_img_gen: true\nmode: {type: wait_for_completion, duration: 2s}\n"
            "reference_pipeline: {latency: {default: 10ms}}\n")
    outcome = run(db, tmp_path, text)
    jobs = outcome.result.jobs
    assert outcome.result.outcome == "passed" and len(jobs) >= 2
    start = jobs[0].seeded_mono
    assert all(j.seeded_mono - start < 2.0 for j in jobs)


def test_observe_false_seeds_and_leaves(db: Database, tmp_path: Path):
    outcome = run(db, tmp_path, "name: seed-only\nobserve: false\nvariants: 2\n")
    result = outcome.result
    assert result.outcome == "seeded" and result.observation is None
    (job,) = result.jobs
    with contextlib.closing(db.connect()) as conn:
        assert count(conn, "select count(*) from jobs_variants where job_id = %s and current_step = "
                           "'user_img_input' and status = 'done'", (job.job_id,)) == 2
        assert rows(conn, "select current_step, status from jobs where job_id = %s", (job.job_id,)) == [
            ("user_img_input", "done")]


def test_ye_start_without_simulation_uses_the_pipelines_ye_part(db: Database, tmp_path: Path):
    outcome = run(db, tmp_path, "name: ye\nsimulate_img_gen: false\n")
    assert outcome.result.outcome == "passed"


def test_cleanup_policy_always_removes_the_runs_rows(db: Database, tmp_path: Path):
    outcome = run(db, tmp_path, "name: clean\nsimulate_img_gen: true\ncleanup: always\n")
    result = outcome.result
    assert result.outcome == "passed" and result.cleanup is not None
    assert result.cleanup.counts["jobs"] == 1 and result.cleanup.counts["variant_evaluations"] == 12
    with contextlib.closing(db.connect()) as conn:
        assert count(conn, "select count(*) from jobs where job_id = %s", (result.jobs[0].job_id,)) == 0


def test_observe_false_in_interval_mode_seeds_on_schedule(db: Database, tmp_path: Path):
    outcome = run(db, tmp_path, "name: seed-loop\nobserve: false\nmode: {type: interval, jobs: 3, interval: 50ms}\n")
    jobs = outcome.result.jobs
    assert outcome.result.outcome == "seeded" and [j.ordinal for j in jobs] == [1, 2, 3]
    # on the interval's grid from the first: a late job (a slow machine) does not push the next ones back, so two
    # neighbours may be closer than 50ms, but job k is never created before k intervals have passed
    assert all(job.seeded_mono - jobs[0].seeded_mono >= k * 0.05 - 0.01 for k, job in enumerate(jobs))

"""A long run in bounded memory: judged jobs leave the run's memory (traces to disk, bookkeeping dropped) and
every report still has all of them, whole."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from runner import resources
from runner.db.connect import Database
from runner.engine import joblog
from runner.report import json_report, junit
from tests.engine.helpers import run

VARIANT_STEPS = ("img_gen", "vlm_analyze", "yolo_detect", "planner", "overlay", "vlm_judge", "ocr_eval",
                 "readability_eval", "iou_eval")


def test_a_run_that_spills_its_judged_jobs_reports_every_job_whole(db: Database, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(joblog, "KEEP", 2)
    outcome = run(db, tmp_path, "name: spill\nsimulate_img_gen: true\n"
                                "mode: {type: interval, jobs: 10, interval: 20ms, max_in_flight: 4}\n")
    result = outcome.result
    assert result.outcome == "passed", [f.text() for f in result.all_failures][:3]
    assert result.jobs.spilled == 8 and len(result.jobs.in_memory()) == 2
    # the run holds nothing more per judged job: no tracker state, no event refs, no observed rows
    assert not outcome.run.tracker.jobs and not outcome.run.judge.job_refs and not outcome.run.observer._rows
    assert outcome.run._host.scope.job_ids() == []  # the in-process pipeline no longer looks for passed jobs
    assert [job.ordinal for job in result.jobs] == list(range(1, 11))
    assert all(job.outcome == "passed" and len(trace.transitions) == 19
               for job in result.jobs for trace in job.variants.values())
    assert {step: result.latency[step].n for step in VARIANT_STEPS} == {step: 30 for step in VARIANT_STEPS}
    assert result.latency["instagram_feed_gen"].n == 10

    path = tmp_path / "report.json"
    now = datetime.now(timezone.utc)
    json_report.write(path, json_report.document([result], 0, now, now, lazy=True))
    doc = json.loads(path.read_text())
    resources.validator("report.schema.json").validate(doc)
    jobs = doc["scenarios"][0]["jobs"]
    assert [j["ordinal"] for j in jobs] == list(range(1, 11))
    assert all(len(v["trace"]) == 19 and v["trace"][-1]["step"] == "iou_eval" for j in jobs for v in j["variants"])
    assert all(j["job_trace"][-1]["step"] == "instagram_feed_gen" for j in jobs)
    assert len(doc["scenarios"][0]["run"]["record"]["rows"]["jobs"]) == 10

    junit.write(tmp_path / "junit.xml", [result])
    assert (tmp_path / "junit.xml").read_text().count("<testcase ") == 10 + 1  # every job, and "scenario checks"


def test_failures_of_spilled_jobs_still_decide_the_verdict_and_reach_every_report(db: Database, tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(joblog, "KEEP", 1)
    outcome = run(db, tmp_path, "name: spill_fail\nsimulate_img_gen: true\ntimeouts: {step: 20s, stall: 20s, "
                                "job: 60s}\nmode: {type: interval, jobs: 4, interval: 20ms, max_in_flight: 2}\n"
                                "reference_pipeline: {faults: [{kind: fail, step: ocr_eval, variants: [2]}]}\n")
    result = outcome.result
    assert result.jobs.spilled == 3
    assert result.outcome == "failed" and [j.outcome for j in result.jobs] == ["failed"] * 4
    assert sorted(f.job_ordinal for f in result.all_failures if f.kind == "unexpected_failure") == [1, 2, 3, 4]
    junit.write(tmp_path / "junit.xml", [result])
    assert (tmp_path / "junit.xml").read_text().count("<failure ") == 4

"""Watch beside the reference pipeline: jobs created as an application creates them, faults injected at chosen
jobs among healthy ones; every fault is reported with its kind, step and row, and nothing else is."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from runner.definition import DEFAULT_TEXT
from runner.outcomes import FailureKind
from runner.pipeline import config as pipeline_config
from runner.pipeline.scope import Scope
from runner.pipeline.worker import Worker
from runner.scenario import loader
from tests.conftest import new_tenant
from tests.watch.app import App, Watching

FAULTS = {
    2: ({"kind": "skip", "step": "yolo_detect", "variants": [1]}, (FailureKind.SKIPPED_STEP, "yolo_detect", 1)),
    4: ({"kind": "backwards", "step": "overlay", "to": "yolo_detect", "variants": [2]},
        (FailureKind.BACKWARDS, "yolo_detect", 2)),
    6: ({"kind": "duplicate", "step": "planner", "variants": [1]}, (FailureKind.DUPLICATE_TERMINAL, "planner", 1)),
    8: ({"kind": "fail_then_retry", "step": "vlm_judge", "variants": [1], "times": 3},
        (FailureKind.RETRY_LIMIT, "vlm_judge", 1)),
    10: ({"kind": "duplicate_trigger", "step": "ad_copy_gen_kor"},
         (FailureKind.DUPLICATE_TERMINAL, "ad_copy_gen_kor", None)),
    12: ({"kind": "hang", "step": "planner", "variants": [2]}, (FailureKind.STEP_TIMEOUT, "planner", 2)),
}
FAILS = {14: {"kind": "fail", "step": "ocr_eval", "variants": [1]}}
"""A failure the pipeline does not retry: the job fails, within the contract (no violation)."""
HEALTHY_FAULTS = {16: {"kind": "stall_notify", "step": "vlm_analyze"}}
"""A lost notification the pipeline's sweep makes up for: the job is healthy."""


@pytest.fixture
def stack():
    with contextlib.ExitStack() as s:
        yield s


def short_timeouts(tmp_path: Path) -> Path:
    """The built-in definition, with planner and ocr_eval bounded to 3s (a hang is then judged in 3s)."""
    text = DEFAULT_TEXT.replace("  - planner\n", "  - {name: planner, timeout: 3s}\n") \
        .replace("  - ocr_eval\n", "  - {name: ocr_eval, timeout: 3s}\n")
    path = tmp_path / "pipeline.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def pipeline(database, tenant: str, stack: contextlib.ExitStack, definition, faults: list[dict],
             max_retries: int = 2) -> Worker:
    config = pipeline_config.build({"sweep": "200ms", "ye_poll": "50ms", "with_ye": True, "slots": 4,
                                    "max_retries": max_retries, "faults": faults})
    worker = Worker(database, config, Scope(tenant=tenant), definition=definition)
    worker.start()
    stack.callback(worker.stop)
    return worker


def test_every_injected_fault_is_reported_with_its_kind_step_and_row(database_with, tmp_path, stack):
    database = database_with()
    definition = loader.load_definition(short_timeouts(tmp_path))
    tenant = new_tenant()
    app = App(database, tenant, stack)
    watching = Watching(database, stack, definition=definition, max_retries=1, settle=2.0)
    faults = [{**fault, "jobs": [ordinal]} for ordinal, (fault, _) in FAULTS.items()]
    faults += [{**fault, "jobs": [ordinal]} for ordinal, fault in {**FAILS, **HEALTHY_FAULTS}.items()]
    worker = pipeline(database, tenant, stack, definition, faults, max_retries=3)
    jobs = [app.create_job(variants=2) for _ in range(20)]
    watching.until(watching.judged(j.job_id for j in jobs))
    by_ordinal = {worker.shared.book.ordinal(j.job_id): j.job_id for j in jobs}
    assert sorted(by_ordinal) == list(range(1, 21))
    verdicts = watching.by_job()
    for ordinal, job_id in by_ordinal.items():
        verdict = verdicts[job_id]
        found = [(f.kind, f.step, f.creation_order) for f in verdict.violations]
        if ordinal in FAULTS:
            assert verdict.outcome == "violated", (ordinal, verdict.retries, app.sql(
                "SELECT h.kind, h.current_step, h.status FROM ye_run_history h JOIN jobs_variants v ON v.job_variants_id = h.row_id "
                "WHERE h.job_id = %s AND v.creation_order = 1 ORDER BY id", (job_id,)))
            assert found[0] == FAULTS[ordinal][1], (ordinal, found)
            assert all(f.job_id == job_id for f in verdict.violations)
        elif ordinal in FAILS:
            assert (verdict.outcome, found) == ("failed", []), ordinal
            assert verdict.end_state == ("ocr_eval", "failed")
        else:
            assert (verdict.outcome, found) == ("completed", []), "\n".join(f.text() for f in verdict.violations)
    assert not any(v.seeded for v in verdicts.values())
    duplicate = verdicts[by_ordinal[10]].violations[0]
    assert "ran twice: a duplicate trigger?" in duplicate.message
    assert verdicts[by_ordinal[12]].broke[0].endswith("pipeline.yaml: $.variant_steps[4].timeout")


def healthy_batch(database, tmp_path: Path, stack: contextlib.ExitStack, jobs: int) -> None:
    tenant = new_tenant()
    app = App(database, tenant, stack)
    watching = Watching(database, stack)
    pipeline(database, tenant, stack, loader.load_definition(short_timeouts(tmp_path)), [])
    created = [app.create_job(variants=3) for _ in range(jobs)]
    verdicts = watching.until(watching.judged(j.job_id for j in created), timeout=60 + jobs * 0.5)
    assert [v for v in verdicts if v.outcome != "completed"] == []
    totals = watching.stop()
    assert totals.violations == 0 and totals.outcomes["completed"] == jobs


def test_no_violation_on_a_batch_of_healthy_jobs(database_with, tmp_path, stack):
    healthy_batch(database_with(), tmp_path, stack, 50)


@pytest.mark.slow
def test_no_violation_on_a_thousand_healthy_jobs(database_with, tmp_path, stack):
    healthy_batch(database_with(), tmp_path, stack, 1000)

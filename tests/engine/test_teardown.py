"""The verdict first, cleanup after: cleanup waits only while the pipeline can still be working on the rows."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli.main import cli
from runner.db.connect import Database
from runner.definition import DEFAULT
from runner.engine.events import CleanupFinished, ScenarioFinished
from runner.pipeline.config import Latency, PipelineConfig
from runner.pipeline.host import PipelineHost
from runner.pipeline.scope import Scope
from tests.conftest import new_tenant
from tests.db.helpers import count
from tests.engine.helpers import run

ORIGINAL_SCOPE = "simulate_img_gen: true\ncleanup: always\nexpect: {stop_after: iou_eval}\n"


@contextlib.contextmanager
def pipeline(db: Database, tenant: str, **config) -> Iterator[PipelineHost]:  # type: ignore[no-untyped-def]
    """A pipeline the run does not own (as against a deployment): it keeps working after the verdict."""
    host = PipelineHost(db, PipelineConfig(**config), Scope(tenant=tenant))
    host.start()
    try:
        yield host
    finally:
        host.stop()


def _url(db: Database) -> str:
    return db.url.render_as_string(hide_password=False)


def _jobs(db: Database, tenant: str) -> int:
    with contextlib.closing(db.connect()) as conn:
        return count(conn, "select count(*) from jobs where tenant_id = %s", (tenant,))


def test_the_verdict_comes_first_and_cleanup_waits_out_the_job_level_steps(db: Database, tmp_path: Path):
    """The scenario stops at iou_eval; the pipeline goes on with the job-level steps, which write only `done`
    (silent while they work): cleanup waits for them, then removes every row."""
    tenant = new_tenant()
    slow_job_steps = (("ad_copy_gen_kor", Latency("fixed", 0.3)), ("instagram_feed_gen", Latency("fixed", 0.3)))
    with pipeline(db, tenant, latency=slow_job_steps):
        outcome = run(db, tmp_path, f"name: scope\ntenant: {{id: {tenant}, isolate: false}}\n{ORIGINAL_SCOPE}",
                      reference_pipeline=False)
    result = outcome.result
    assert result.outcome == "passed", [f.text() for f in result.all_failures]
    kinds = [type(e) for e in outcome.events]
    assert kinds.index(ScenarioFinished) < kinds.index(CleanupFinished)
    assert result.cleanup is not None and result.cleanup.counts.get("jobs") == 1
    assert result.cleanup_pending is None and result.cleanup_error is None
    assert _jobs(db, tenant) == 0


def test_a_row_silent_past_its_next_steps_limit_is_at_rest(db: Database, tmp_path: Path):
    """The pipeline never runs the job-level steps here: once the job row has been silent for longer than
    ad_copy_gen_kor may take (3 s), nothing can still be working on it, and cleanup goes ahead (it used to wait
    30 s, then keep the rows)."""
    tenant = new_tenant()
    quick = dataclasses.replace(DEFAULT, job_steps=tuple(dataclasses.replace(s, timeout=3.0) if s.name ==
                                                         "ad_copy_gen_kor" else s for s in DEFAULT.job_steps))
    with pipeline(db, tenant, stop_after="iou_eval"):
        outcome = run(db, tmp_path, f"name: no-job-steps\ntenant: {{id: {tenant}, isolate: false}}\n{ORIGINAL_SCOPE}",
                      reference_pipeline=False, cleanup_wait=60.0, definition=quick)
    assert outcome.result.cleanup is not None and outcome.result.cleanup_pending is None
    assert _jobs(db, tenant) == 0


def test_a_scenarios_tight_limit_does_not_cut_the_pipelines_work_short(db: Database, tmp_path: Path):
    """planner takes 4 s; the scenario allows 1 s (a failure it reports), but the pipeline is still working on the
    rows: cleanup does not delete them under it (the definition's bound, 5 min, decides), it keeps them pending."""
    tenant = new_tenant()
    with pipeline(db, tenant, latency=(("planner", Latency("fixed", 4.0)),)):
        outcome = run(db, tmp_path, f"name: tight\ntenant: {{id: {tenant}, isolate: false}}\n{ORIGINAL_SCOPE}"
                      "timeouts: {step: 1s, grace: 100ms}\n", reference_pipeline=False, cleanup_wait=0.5)
        result = outcome.result
        assert "step_timeout" in {f.kind for f in result.all_failures}
        assert result.cleanup is None and result.cleanup_error is None and result.cleanup_pending is not None
        assert _jobs(db, tenant) == 1  # still there while planner works


@pytest.fixture
def pending_run(database_with, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A run whose cleanup gave up waiting (cleanup_wait 0.5 s) while ad_copy_gen_kor may still run for 10 min."""
    db = database_with()
    tenant = new_tenant()
    with pipeline(db, tenant, stop_after="iou_eval"):
        outcome = run(db, tmp_path, f"name: pending\ntenant: {{id: {tenant}, isolate: false}}\n{ORIGINAL_SCOPE}"
                      "timeouts: {step: 10m}\n", reference_pipeline=False, cleanup_wait=0.5)
    return db, tenant, outcome


def test_rows_the_pipeline_may_still_work_on_are_kept_as_pending(pending_run, tmp_path: Path):
    db, tenant, outcome = pending_run
    result = outcome.result
    assert result.outcome == "passed" and result.cleanup is None and result.cleanup_error is None
    assert result.cleanup_pending is not None and result.cleanup_pending_rows == 1  # the job row
    assert _jobs(db, tenant) == 1
    early = CliRunner().invoke(cli, ["cleanup", "--pending", "--database-url", _url(db)])
    assert early.exit_code == 0, early.output
    assert f"skipped run {result.run_id}: the pipeline may still be working on its rows for" in early.stderr
    assert _jobs(db, tenant) == 1
    later = CliRunner().invoke(cli, ["run", str(_quick(tmp_path)), "--database-url", _url(db),
                                     "--no-reference-pipeline"])
    assert "1 earlier run(s) kept rows while the pipeline might still work on them (0 ready now): " \
           "ye-run cleanup --pending removes them" in later.stdout
    with contextlib.closing(db.connect()) as conn, conn.cursor() as cur:  # its time is over
        cur.execute("UPDATE ye_run_runs SET cleanup_pending_until = now() - interval '1 second' WHERE run_id = %s",
                    (result.run_id,))
        conn.commit()
    done = CliRunner().invoke(cli, ["cleanup", "--pending", "--database-url", _url(db)])
    assert done.exit_code == 0 and f"cleanup of run {result.run_id}" in done.stdout
    assert _jobs(db, tenant) == 0
    again = CliRunner().invoke(cli, ["cleanup", "--pending", "--database-url", _url(db)])
    assert "no run has rows pending cleanup" in again.stdout


def _quick(tmp_path: Path) -> Path:
    path = tmp_path / "quick.yaml"
    path.write_text("name: quick\ntenant: {id: ye_quick_test, isolate: true}\nobserve: false\ncleanup: always\n")
    return path

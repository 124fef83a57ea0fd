"""The deployment-like harness itself: jobs seeded by hand walk it the way they walk the deployment."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid

import pytest

from runner.db.connect import Database
from tests.conftest import ROOT
from tests.deployment.listener import Options

TENANT = "harness_tenant"
AD_COPY = "Fresh bread, baked every morning"
YH_STEPS = ["vlm_analyze", "yolo_detect", "planner", "overlay", "vlm_judge", "ocr_eval", "readability_eval",
            "iou_eval"]
WALK = [("user_img_input", "done"), ("img_gen", "running"), ("img_gen", "done")] + [
    (step, status) for step in YH_STEPS for status in ("running", "done")]
RESULT_TABLES = ("vlm_traces", "detections", "yolo_runs", "image_assets", "planner_proposals", "overlay_layouts",
                 "evaluations", "txt_ad_copy_generations", "instagram_feeds")
WRITE_LOG = """
CREATE TABLE harness_writes (id bigserial PRIMARY KEY, xid bigint NOT NULL DEFAULT txid_current(),
                             tbl text NOT NULL, step text, status text);
CREATE FUNCTION harness_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME IN ('jobs', 'jobs_variants') THEN
        INSERT INTO harness_writes (tbl, step, status)
        VALUES (TG_TABLE_NAME, to_jsonb(NEW) ->> 'current_step', to_jsonb(NEW) ->> 'status');
    ELSE
        INSERT INTO harness_writes (tbl) VALUES (TG_TABLE_NAME);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER harness_log AFTER INSERT OR UPDATE OF current_step, status ON jobs_variants
    FOR EACH ROW EXECUTE FUNCTION harness_log();
CREATE TRIGGER harness_log AFTER UPDATE OF current_step, status ON jobs
    FOR EACH ROW EXECUTE FUNCTION harness_log();
""" + "".join(f"CREATE TRIGGER harness_log AFTER INSERT OR UPDATE ON {t} FOR EACH ROW EXECUTE FUNCTION harness_log();\n"
              for t in RESULT_TABLES)
"""Every state write and result row, with the transaction that wrote it (a test's own audit, not the harness's)."""


def execute(db: Database, sql: str, params: tuple = ()) -> list[tuple]:
    with contextlib.closing(db.connect("ye-run tests")) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall() if cur.description else []
        conn.commit()
    return rows


def seed_job(db: Database, variants: int = 3, ad_copy: str | None = AD_COPY, step: str = "user_img_input",
             job_state: tuple[str, str] = ("user_img_input", "done")) -> tuple[str, list[str]]:
    """A job as the application leaves it (and as ye-run seeds it); with the English ad copy the text part writes."""
    job, asset = str(uuid.uuid4()), str(uuid.uuid4())
    ids = [str(uuid.uuid4()) for _ in range(variants)]
    with contextlib.closing(db.connect("ye-run tests")) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO tenants (tenant_id, display_name) VALUES (%s, 'harness') ON CONFLICT DO NOTHING",
                    (TENANT,))
        cur.execute("INSERT INTO jobs (job_id, tenant_id, current_step, status) VALUES (%s, %s, %s, %s)",
                    (job, TENANT, *job_state))
        cur.execute("INSERT INTO image_assets (image_asset_id, image_type, image_url, width, height, tenant_id, "
                    "job_id) VALUES (%s, 'generated', '/assets/harness.png', 64, 64, %s, %s)", (asset, TENANT, job))
        cur.execute("INSERT INTO job_inputs (job_id, img_asset_id, desc_kor) VALUES (%s, %s, '빵')", (job, asset))
        for order, variant in enumerate(ids, start=1):
            cur.execute("INSERT INTO jobs_variants (job_variants_id, job_id, img_asset_id, creation_order, status, "
                        "current_step) VALUES (%s, %s, %s, %s, 'done', %s)", (variant, job, asset, order, step))
        if ad_copy:
            cur.execute("INSERT INTO txt_ad_copy_generations (job_id, generation_stage, ad_copy_eng, status) "
                        "VALUES (%s, 'ad_copy_eng', %s, 'done')", (job, ad_copy))
        conn.commit()
    return job, ids


def simulate_img_gen(db: Database, job: str) -> None:
    """The YE part, as its documentation says to simulate it: running, then done, in two commits."""
    for status in ("running", "done"):
        execute(db, "UPDATE jobs_variants SET current_step = 'img_gen', status = %s WHERE job_id = %s", (status, job))


def job_row(db: Database, job: str) -> tuple[str, str]:
    return execute(db, "SELECT current_step, status FROM jobs WHERE job_id = %s", (job,))[0]


def history(db: Database, row_id: str) -> list[tuple[str, str]]:
    return execute(db, "SELECT current_step, status FROM ye_run_history WHERE row_id = %s ORDER BY id", (row_id,))


def test_a_job_with_an_ad_copy_walks_every_step_to_the_instagram_feed(deployment_db, deployment_listener):
    job, variants = seed_job(deployment_db)
    simulate_img_gen(deployment_db, job)
    deployment_listener.wait_idle()
    assert job_row(deployment_db, job) == ("instagram_feed_gen", "done")
    for variant in variants:
        assert history(deployment_db, variant) == WALK
    assert execute(deployment_db, "SELECT count(*) FROM instagram_feeds WHERE job_id = %s", (job,)) == [(1,)]
    assert execute(deployment_db, "SELECT ad_copy_kor FROM txt_ad_copy_generations WHERE job_id = %s AND "
                   "generation_stage = 'eng_to_kor'", (job,)) == [(f"[ko] {AD_COPY}",)]
    assert (deployment_listener.refusals, deployment_listener.errors) == ([], [])


def test_without_an_ad_copy_the_job_stays_iou_eval_done(deployment_db, deployment_listener):
    job, variants = seed_job(deployment_db, ad_copy=None)
    simulate_img_gen(deployment_db, job)
    deployment_listener.wait_idle()
    assert job_row(deployment_db, job) == ("iou_eval", "done")
    assert all(history(deployment_db, v)[-1] == ("iou_eval", "done") for v in variants)
    assert {(r.stage, r.reason) for r in deployment_listener.refusals} == {
        ("ad_copy_gen_kor", f"English ad copy not found for job_id: {job}")}
    assert execute(deployment_db, "SELECT count(*) FROM txt_ad_copy_generations WHERE job_id = %s", (job,)) == [(0,)]
    assert execute(deployment_db, "SELECT count(*) FROM llm_traces WHERE job_id = %s", (job,)) == [(0,)]


@pytest.mark.parametrize("listener_options,runs", [
    (Options(workers=1, recover_lagging=False), 2),
    (Options(workers=1, recover_lagging=False, duplicate_trigger=False), 1),
], ids=["deployed", "fixed"])
def test_ad_copy_gen_kor_runs_once_per_path_that_starts_it(deployment_db, deployment_listener, runs):
    job, _ = seed_job(deployment_db)
    simulate_img_gen(deployment_db, job)
    deployment_listener.wait_idle()
    job_history = history(deployment_db, job)
    assert job_history.count(("ad_copy_gen_kor", "done")) == runs
    assert job_history[-1] == ("instagram_feed_gen", "done")
    assert execute(deployment_db, "SELECT count(*) FROM llm_traces WHERE job_id = %s AND operation_type = "
                   "'eng_to_kor'", (job,)) == [(runs,)]


def writes_by_transaction(db: Database) -> dict[int, list[tuple[str, str | None, str | None]]]:
    grouped: dict[int, list[tuple[str, str | None, str | None]]] = {}
    for xid, table, step, status in execute(db, "SELECT xid, tbl, step, status FROM harness_writes ORDER BY id"):
        grouped.setdefault(xid, []).append((table, step, status))
    return grouped


def transactions_of(grouped: dict, table: str, step: str, status: str) -> list[list]:
    return [w for w in grouped.values() if (table, step, status) in w]


def transaction_of(grouped: dict, table: str, step: str, status: str) -> list:
    [writes] = transactions_of(grouped, table, step, status)
    return writes


def test_each_stage_commits_the_way_its_router_does(deployment_db, deployment_listener):
    execute(deployment_db, WRITE_LOG)
    job, _ = seed_job(deployment_db, variants=1)
    simulate_img_gen(deployment_db, job)
    deployment_listener.wait_idle()
    grouped = writes_by_transaction(deployment_db)
    for step, result in (("vlm_analyze", "vlm_traces"), ("yolo_detect", "detections")):
        writes = transaction_of(grouped, "jobs_variants", step, "running")
        assert ("jobs_variants", step, "done") in writes and (result, None, None) in writes
    for step, result in (("planner", "image_assets"), ("overlay", "overlay_layouts"), ("vlm_judge", "vlm_traces"),
                         ("ocr_eval", "evaluations"), ("readability_eval", "evaluations"),
                         ("iou_eval", "evaluations")):
        running = transaction_of(grouped, "jobs_variants", step, "running")
        assert (result, None, None) in running and ("jobs_variants", step, "done") not in running
        done = transaction_of(grouped, "jobs_variants", step, "done")
        assert [w for w in done if w[0] != "jobs"] == [("jobs_variants", step, "done")]  # with the job row, if moved
    for step, result in (("ad_copy_gen_kor", "txt_ad_copy_generations"), ("instagram_feed_gen", "instagram_feeds")):
        assert all((result, None, None) in w for w in transactions_of(grouped, "jobs", step, "done"))
        assert ("jobs", step, "running") not in [w for writes in grouped.values() for w in writes]


@pytest.mark.parametrize("listener_options", [Options(workers=1, recover_lagging=True)])
def test_a_variant_behind_its_running_job_row_is_sent_on_with_its_retry_count_bumped(deployment_db,
                                                                                    deployment_listener):
    job, [ahead, behind] = seed_job(deployment_db, variants=2, step="yolo_detect")
    execute(deployment_db, "UPDATE jobs_variants SET current_step = 'planner' WHERE job_variants_id = %s", (ahead,))
    deployment_listener.wait_idle()  # the job row followed `ahead` to (planner, running): `behind` is behind
    [(retries, step, status)] = execute(deployment_db, "SELECT retry_count, current_step, status FROM jobs_variants "
                                        "WHERE job_variants_id = %s", (behind,))
    assert retries >= 1 and (step, status) == ("iou_eval", "done")
    assert history(deployment_db, behind)[:2] == [("yolo_detect", "done"), ("planner", "running")]


def wait_for_job_state(db: Database, job: str, state: tuple[str, str], timeout: float = 30.0) -> None:
    """Block until a job_state_changed notification says `job` reached `state`."""
    deadline = time.monotonic() + timeout
    with contextlib.closing(db.connect("ye-run tests", autocommit=True)) as conn:
        conn.cursor().execute("LISTEN job_state_changed")
        if job_row(db, job) == state:
            return
        while time.monotonic() < deadline:
            if select.select([conn], [], [], max(0.0, deadline - time.monotonic()))[0]:
                conn.poll()
                seen = [json.loads(n.payload) for n in conn.notifies]
                conn.notifies.clear()
                if any((p["job_id"], p["current_step"], p["status"]) == (job, *state) for p in seen):
                    return
    raise AssertionError(f"job {job} did not reach {state} within {timeout}s (now {job_row(db, job)})")


@pytest.mark.parametrize("listener_options", [Options(workers=1, recover_lagging=False, recovery_period=0.05)])
def test_the_recovery_sweep_finishes_a_job_left_iou_eval_running(deployment_db, deployment_listener):
    job, _ = seed_job(deployment_db, step="iou_eval", job_state=("iou_eval", "running"))
    wait_for_job_state(deployment_db, job, ("instagram_feed_gen", "done"))
    assert execute(deployment_db, "SELECT retry_count FROM jobs WHERE job_id = %s", (job,)) == [(1,)]


def await_line(process: subprocess.Popen, text: str, timeout: float = 30.0) -> None:
    """Block until the process writes a line holding `text` to stderr (it logs "listening on" once it LISTENs)."""
    deadline = time.monotonic() + timeout
    while select.select([process.stderr], [], [], max(0.0, deadline - time.monotonic()))[0]:
        line = process.stderr.readline()
        if not line or text in line:
            break
    else:
        raise AssertionError(f"the listener wrote no {text!r} within {timeout}s")
    assert line, f"the listener exited ({process.wait()}) before writing {text!r}"


def test_the_listener_runs_as_a_process_until_terminated(deployment_db):
    url = deployment_db.url.render_as_string(hide_password=False)
    process = subprocess.Popen([sys.executable, "-m", "tests.deployment.listener", "--database-url", url,
                                "--no-duplicate-trigger", "--no-recover-lagging", "--recovery-period", "0"], cwd=ROOT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"}, stderr=subprocess.PIPE, text=True)
    try:
        await_line(process, "listening on")
        job, _ = seed_job(deployment_db)
        simulate_img_gen(deployment_db, job)
        wait_for_job_state(deployment_db, job, ("instagram_feed_gen", "done"))
        assert history(deployment_db, job).count(("ad_copy_gen_kor", "done")) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0

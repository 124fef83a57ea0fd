"""The job row's lane: job-level steps after the variants, checked like a variant's trace; faults caught."""

from __future__ import annotations

import contextlib
import json
import select
import threading
import uuid
from pathlib import Path

import pytest

from runner.db.connect import Database
from runner.engine.events import Note
from tests.engine.helpers import run

BASE = "simulate_img_gen: true\ntimeouts: {step: 20s, stall: 20s, job: 60s}\n"
JOB_ROW = "› job row › "

CAUGHT = {
    "fail": ("{kind: fail, step: ad_copy_gen_kor}", "unexpected_failure", "ad_copy_gen_kor: failed at ad_copy_gen_kor"),
    "skip": ("{kind: skip, step: ad_copy_gen_kor}", "skipped_step",
             "ad_copy_gen_kor: skipped ad_copy_gen_kor (went from iou_eval straight to instagram_feed_gen)"),
    "duplicate": ("{kind: duplicate, step: instagram_feed_gen}", "duplicate_terminal",
                  "instagram_feed_gen: instagram_feed_gen ran twice: a duplicate trigger?"),
    "backwards": ("{kind: backwards, step: instagram_feed_gen, to: ad_copy_gen_kor}", "backwards",
                  "ad_copy_gen_kor: returned to ad_copy_gen_kor after instagram_feed_gen (not a declared retry)"),
}


@pytest.mark.parametrize("name", sorted(CAUGHT))
def test_a_fault_on_a_job_level_step_is_caught_on_the_job_row(db: Database, tmp_path: Path, name: str):
    fault, kind, what = CAUGHT[name]
    outcome = run(db, tmp_path, f"name: {name}\n{BASE}reference_pipeline: {{faults: [{fault}]}}\n")
    assert outcome.result.outcome == "failed"
    assert kind in outcome.kinds(), [f.text() for f in outcome.result.all_failures]
    failure = outcome.failure(kind)
    job = outcome.result.jobs[0]
    assert failure.message == f"{name} › job 1 ({job.job_id}) {JOB_ROW}{what}"
    assert failure.creation_order is None and failure.variant_id is None
    assert "expected (-) vs observed (+):" in failure.detail and "iou_eval done" in failure.detail
    assert all(v.transitions[-1].state == ("iou_eval", "done") for v in job.variants.values())


def test_a_hung_job_level_step_times_out_on_time(db: Database, tmp_path: Path):
    outcome = run(db, tmp_path, "name: hang\nsimulate_img_gen: true\ntimeouts: {steps: {ad_copy_gen_kor: 1s}, "
                                "step: 30s, stall: 30s, job: 60s}\n"
                                "reference_pipeline: {faults: [{kind: hang, step: ad_copy_gen_kor}]}\n")
    assert outcome.kinds() == {"step_timeout"}, [f.text() for f in outcome.result.all_failures]
    failure = outcome.failure("step_timeout")
    assert failure.message.endswith(f"{JOB_ROW}ad_copy_gen_kor: never ran within 1s: nothing written after "
                                    "(iou_eval, done) (ad_copy_gen_kor writes only done, so a run that hangs shows "
                                    "nothing either)")
    assert failure.limit == 1.0 and failure.spent >= 1.0


def _ad_copy_rows(db: Database, job_id: str) -> tuple[list[tuple], list[tuple]]:
    with contextlib.closing(db.connect("ye-run tests")) as conn, conn.cursor() as cur:
        cur.execute("SELECT generation_stage, coalesce(ad_copy_eng, refined_ad_copy_eng, ad_copy_kor), status "
                    "FROM txt_ad_copy_generations WHERE job_id = %s ORDER BY pk", (job_id,))
        copies = cur.fetchall()
        cur.execute("SELECT tenant_id, refined_ad_copy_eng, ad_copy_kor, product_description FROM instagram_feeds "
                    "WHERE job_id = %s", (job_id,))
        return copies, cur.fetchall()


def test_the_job_level_stages_read_the_ad_copy_and_write_the_korean_copy_and_the_feed(db: Database, tmp_path: Path):
    outcome = run(db, tmp_path, f"name: ad-copy\n{BASE}ad_copy: Autumn sale\n")
    assert outcome.result.outcome == "passed", [f.text() for f in outcome.result.all_failures]
    job = outcome.result.jobs[0]
    assert job.final_state == ("instagram_feed_gen", "done")
    copies, feeds = _ad_copy_rows(db, job.job_id)
    korean = "[참조 파이프라인 번역] Autumn sale"
    assert copies == [("ad_copy_eng", "Autumn sale", "done"), ("eng_to_kor", korean, "done")]
    assert feeds == [(outcome.result.record.tenant_id, "Autumn sale", korean, "YE 파트 테스트용 이미지")]
    refined = run(db, tmp_path, f"name: refined\n{BASE}fixtures: [{{table: txt_ad_copy_generations, rows: [{{job_id: "
                                "'${job.id}', generation_stage: refined_ad_copy, refined_ad_copy_eng: Refined sale, "
                                "status: done}]}]\n")
    copies, feeds = _ad_copy_rows(db, refined.result.jobs[0].job_id)
    assert copies[-1] == ("eng_to_kor", "[참조 파이프라인 번역] Refined sale", "done")
    assert [f[1] for f in feeds] == ["Refined sale"]


def test_without_its_ad_copy_the_job_row_stays_at_iou_eval(db: Database, tmp_path: Path):
    """The deployment's eng-to-kor answers an error and writes nothing without the English ad copy."""
    outcome = run(db, tmp_path, "name: no-ad-copy\nsimulate_img_gen: true\nseed_rows: {english_ad_copy: false}\n"
                                "timeouts: {steps: {ad_copy_gen_kor: 1s}, step: 20s, stall: 20s, job: 60s}\n")
    job = outcome.result.jobs[0]
    assert outcome.kinds() == {"step_timeout"}, [f.text() for f in outcome.result.all_failures]
    assert outcome.failure("step_timeout").message.endswith(
        f"{JOB_ROW}ad_copy_gen_kor: never ran within 1s: nothing written after (iou_eval, done) (ad_copy_gen_kor "
        "writes only done, so a run that hangs shows nothing either)")
    assert [t.state for t in job.job_trace][-1] == ("iou_eval", "done")
    assert _ad_copy_rows(db, job.job_id) == ([], [])


def test_a_duplicate_trigger_runs_ad_copy_gen_kor_twice_and_is_caught(db: Database, tmp_path: Path):
    outcome = run(db, tmp_path, f"name: twice\n{BASE}reference_pipeline: {{faults: [{{kind: duplicate_trigger, "
                                "step: ad_copy_gen_kor}]}\n")
    job = outcome.result.jobs[0]
    assert outcome.kinds() == {"duplicate_terminal"}, [f.text() for f in outcome.result.all_failures]
    assert outcome.failure("duplicate_terminal").message == (
        f"twice › job 1 ({job.job_id}) {JOB_ROW}ad_copy_gen_kor: ad_copy_gen_kor ran twice: a duplicate trigger?")
    states = [t.state for t in job.job_trace]
    at = states.index(("ad_copy_gen_kor", "done"))
    assert states[at:at + 2] == [("ad_copy_gen_kor", "done")] * 2
    assert ("instagram_feed_gen", "done") not in states[:at + 2]
    copies, _ = _ad_copy_rows(db, job.job_id)
    assert [c[0] for c in copies] == ["ad_copy_eng", "eng_to_kor"]


def test_cleanup_removes_the_ad_copy_and_the_feed(db: Database, tmp_path: Path):
    outcome = run(db, tmp_path, f"name: clean\n{BASE}cleanup: always\n")
    result = outcome.result
    assert result.outcome == "passed", [f.text() for f in result.all_failures] or result.error
    assert result.cleanup is not None
    assert (result.cleanup.counts["txt_ad_copy_generations"], result.cleanup.counts["instagram_feeds"]) == (2, 1)
    assert _ad_copy_rows(db, result.jobs[0].job_id) == ([], [])


def test_declared_job_level_failure_and_retry_pass(db: Database, tmp_path: Path):
    failed = run(db, tmp_path, f"name: declared\n{BASE}expect: {{failures: [{{step: ad_copy_gen_kor}}]}}\n"
                               "reference_pipeline: {faults: [{kind: fail, step: ad_copy_gen_kor}]}\n")
    assert failed.result.outcome == "passed", [f.text() for f in failed.result.all_failures]
    assert failed.result.jobs[0].final_state == ("ad_copy_gen_kor", "failed")
    retried = run(db, tmp_path, f"name: retried\n{BASE}expect: {{retries: {{instagram_feed_gen: 1}}}}\n"
                                "reference_pipeline: {faults: [{kind: fail_then_retry, step: instagram_feed_gen}]}\n")
    assert retried.result.outcome == "passed", [f.text() for f in retried.result.all_failures]
    states = [t.state for t in retried.result.jobs[0].job_trace]
    assert states[-3:] == [("instagram_feed_gen", "failed"), ("instagram_feed_gen", "queued"),
                           ("instagram_feed_gen", "done")]


def test_a_required_job_level_failure_that_does_not_happen_fails(db: Database, tmp_path: Path):
    outcome = run(db, tmp_path, f"name: missing\n{BASE}expect: {{failures: [{{step: ad_copy_gen_kor}}]}}\n")
    assert "expected_failure_missing" in outcome.kinds()
    assert outcome.failure("expected_failure_missing").message.endswith(
        f"{JOB_ROW}ad_copy_gen_kor: was expected to fail at ad_copy_gen_kor, but ended (instagram_feed_gen, done)")


def test_job_level_latency_is_measured_on_the_job_row_and_limited(db: Database, tmp_path: Path):
    outcome = run(db, tmp_path, f"name: slow-feed\n{BASE}expect: {{latency: {{instagram_feed_gen: {{max: 10ms}}}}}}\n"
                                "reference_pipeline: {latency: {steps: {instagram_feed_gen: 80ms}}}\n")
    assert outcome.kinds() == {"latency_limit"}
    assert outcome.result.latency["instagram_feed_gen"].n == 1
    assert outcome.result.latency["instagram_feed_gen"].max >= 0.08


def test_cleanup_waits_for_a_pipeline_still_working_on_the_job(db: Database, tmp_path: Path):
    """A pipeline the run does not own keeps working on the job after the scenario's last step, silently (its
    job-level stages write only `done`): cleanup waits for it and never deletes rows under it."""
    from runner.pipeline import config as pipeline_config
    from runner.pipeline.scope import Scope
    from runner.pipeline.worker import Worker

    config = pipeline_config.build({"with_ye": True, "sweep": "200ms", "ye_poll": "50ms",
                                    "latency": {"steps": {"ad_copy_gen_kor": "1500ms", "instagram_feed_gen": "1s"}}})
    tenant = f"ye_wait_{uuid.uuid4().hex[:8]}_test"
    worker = Worker(db, config, Scope(tenant_pattern=f"^{tenant}_"))
    worker.start()
    try:
        outcome = run(db, tmp_path, f"name: stops-early\ncleanup: always\nexpect: {{stop_after: iou_eval}}\n"
                                    f"tenant: {{id: {tenant}}}\ntimeouts: {{step: 20s, stall: 20s, job: 60s}}\n",
                      reference_pipeline=False)
    finally:
        worker.stop()
    result = outcome.result
    assert result.outcome == "passed", [f.text() for f in result.all_failures] or result.error
    notes = [e.text for e in outcome.events if isinstance(e, Note)]
    assert any(text.startswith("cleanup waited") for text in notes), notes
    assert result.cleanup is not None and result.cleanup.counts["jobs"] == 1
    assert worker.stats.transitions == 3 * 18 + 2  # every variant write, and both job-level steps, were made


def _drive_job_steps(db: Database, stop: threading.Event, tenant_prefix: str) -> None:
    """Another process's listener: moves job rows through the job-level steps, as the deployment does (done only)."""
    with contextlib.closing(db.connect("held-out listener", autocommit=True)) as conn, conn.cursor() as cur:
        cur.execute("LISTEN job_state_changed")
        following = {"iou_eval": "ad_copy_gen_kor", "ad_copy_gen_kor": "instagram_feed_gen"}
        while not stop.is_set():
            if not select.select([conn], [], [], 0.2)[0]:
                continue
            conn.poll()
            while conn.notifies:
                data = json.loads(conn.notifies.pop(0).payload)
                step = following.get(data["current_step"])
                if data["status"] == "done" and step and str(data["tenant_id"]).startswith(tenant_prefix):
                    cur.execute("UPDATE jobs SET current_step = %s, status = 'done', updated_at = clock_timestamp() "
                                "WHERE job_id = %s AND current_step = %s AND status = 'done'",
                                (step, data["job_id"], data["current_step"]))


@pytest.mark.parametrize("fault, kinds", [("", set()), ("skip", {"skipped_step"})])
def test_job_rows_moved_by_another_process_are_asserted(db: Database, tmp_path: Path, fault: str, kinds: set):
    """Held out: the job-level steps are written by a listener that is not ye-run's reference pipeline."""
    stop = threading.Event()
    listener = threading.Thread(target=_drive_job_steps, args=(db, stop, "ye_pipeline_test_tenant"), daemon=True)
    listener.start()
    try:
        # The reference pipeline stops at iou_eval; the job-level steps are the other listener's.
        text = f"name: held-out\n{BASE}reference_pipeline: {{stop_after: iou_eval}}\n"
        if fault:  # that listener's deployment skips a step: the job row jumps from iou_eval to instagram_feed_gen
            with contextlib.closing(db.connect(autocommit=True)) as conn, conn.cursor() as cur:
                cur.execute("CREATE OR REPLACE FUNCTION held_out_skip() RETURNS trigger LANGUAGE plpgsql AS $$ "
                            "BEGIN IF NEW.current_step = 'ad_copy_gen_kor' AND NEW.tenant_id LIKE 'ye_pipeline_test_"
                            "tenant_%' THEN NEW.current_step := 'instagram_feed_gen'; END IF; RETURN NEW; END $$")
                cur.execute("CREATE TRIGGER held_out_skip BEFORE UPDATE ON jobs FOR EACH ROW "
                            "EXECUTE FUNCTION held_out_skip()")
        try:
            outcome = run(db, tmp_path, text)
        finally:
            if fault:
                with contextlib.closing(db.connect(autocommit=True)) as conn, conn.cursor() as cur:
                    cur.execute("DROP TRIGGER held_out_skip ON jobs")
    finally:
        stop.set()
        listener.join(5)
    job = outcome.result.jobs[0]
    assert outcome.kinds() == kinds, [f.text() for f in outcome.result.all_failures]
    states = [t.state for t in job.job_trace]
    if not kinds:
        assert outcome.result.outcome == "passed"
        assert states[-3:] == [("iou_eval", "done"), ("ad_copy_gen_kor", "done"), ("instagram_feed_gen", "done")]
    else:
        assert outcome.failure("skipped_step").message.endswith(
            f"{JOB_ROW}ad_copy_gen_kor: skipped ad_copy_gen_kor (went from iou_eval straight to instagram_feed_gen)")


DEPLOYMENT_JOB_ROW = """
CREATE OR REPLACE FUNCTION complete_job_from_variants() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM jobs WHERE job_id = NEW.job_id FOR NO KEY UPDATE;
    IF NEW.status = 'failed' THEN  -- the deployment: failed where the job row was, not where the variant was
        UPDATE jobs SET status = 'failed', updated_at = clock_timestamp()
        WHERE job_id = NEW.job_id AND status <> 'failed';
    ELSIF NOT EXISTS (SELECT 1 FROM jobs_variants WHERE job_id = NEW.job_id
                      AND (current_step <> NEW.current_step OR status <> 'done')) THEN
        UPDATE jobs SET current_step = NEW.current_step, status = 'done', updated_at = clock_timestamp()
        WHERE job_id = NEW.job_id AND (current_step, status) IS DISTINCT FROM (NEW.current_step, 'done');
    END IF;
    RETURN NEW;
END $$;
"""
FAILS_AT_OCR = (f"{BASE}expect: {{failures: [{{step: ocr_eval, variants: [2]}}]}}\n"
                "reference_pipeline: {latency: {steps: {ocr_eval: 30ms}}, faults: [{kind: fail, step: ocr_eval, "
                "variants: [2]}]}\n")


def test_the_definitions_job_row_rule_decides_what_a_failed_job_row_may_be(database_with, tmp_path: Path):
    """A deployment leaves the job row failed at the last step all variants shared: the default rule accepts
    it; a definition claiming the reference trigger's exact rule (each_step) does not."""
    from runner.definition import DEFAULT
    import dataclasses

    database = database_with(DEPLOYMENT_JOB_ROW)
    together = run(database, tmp_path, f"name: together\n{FAILS_AT_OCR}")
    assert together.result.outcome == "passed", [f.text() for f in together.result.all_failures]
    state = together.result.jobs[0].final_state
    assert state is not None and state[1] == "failed" and DEFAULT.index(state[0]) < DEFAULT.index("ocr_eval")
    strict = dataclasses.replace(DEFAULT, job_row="each_step", sha256="each_step")
    each_step = run(database, tmp_path, f"name: each-step\n{FAILS_AT_OCR}", job_settle=0.3, definition=strict)
    assert each_step.kinds() == {"job_final_state"}
    assert "expected (ocr_eval, failed)" in each_step.failure("job_final_state").message

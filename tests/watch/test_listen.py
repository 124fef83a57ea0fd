"""Watch without the history table: LISTEN on the pipeline's channels plus reconciling reads, and it says so.

What the notifications show is judged as from the history; what they cannot show (a state written twice, writes
while the connection is down) is not made into a violation; writes no notification told of are found by the
reconciling read.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid

import pytest
from click.testing import CliRunner

from runner.cli.main import cli
from runner.db.connect import Database
from runner.outcomes import FailureKind
from runner.scenario import loader
from runner.watch.listen import DESCRIPTION, ListenSource, parse
from tests.conftest import new_tenant
from tests.watch.app import WAIT, App, Watching
from tests.watch.test_reference import FAILS, FAULTS, HEALTHY_FAULTS, pipeline, short_timeouts
from tests.watch.test_scripted import JOB_STEPS, WALK

WITHOUT_HISTORY = """
DROP FUNCTION ye_run_record_variant() CASCADE;
DROP FUNCTION ye_run_record_job() CASCADE;
DROP TABLE ye_run_history;
"""
"""The history table and its triggers gone: the database as a deployment without `db init --runner-only` has it."""

IDS_ONLY = """
CREATE OR REPLACE FUNCTION notify_job_variant_state_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('job_variant_state_changed', json_build_object('job_variants_id', NEW.job_variants_id,
                                                                     'job_id', NEW.job_id)::text);
    RETURN NEW;
END $$;
CREATE OR REPLACE FUNCTION notify_job_state_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('job_state_changed', json_build_object('job_id', NEW.job_id)::text);
    RETURN NEW;
END $$;
"""
"""Notifications that name the row but carry no state: each one is a wake-up for a read of the job's rows."""


@pytest.fixture
def stack():
    with contextlib.ExitStack() as s:
        yield s


def until(condition, what: str, timeout: float = WAIT) -> None:
    """Wait for a condition another thread makes true (checked every 50ms, up to `timeout`)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not reached in {timeout:g}s: {what}"
        threading.Event().wait(0.05)


def url(database: Database) -> str:
    return database.url.render_as_string(hide_password=False)


def walked(app: App):
    job = app.create_job()
    app.move(job, WALK)
    app.move_job(job, JOB_STEPS)
    return job


def kinds(verdict) -> list[tuple[str, str | None, int | None]]:
    return [(str(f.kind), f.step, f.creation_order) for f in verdict.violations]


def test_the_payloads_of_the_reference_and_the_deployment_are_read():
    variant = parse("job_variant_state_changed", '{"job_variants_id": "v1", "job_id": "j1", "current_step": '
                    '"planner", "status": "done", "tenant_id": "t", "updated_at": "2026-01-01T00:00:00+00:00"}')
    assert variant is not None and (variant.kind, variant.row_id, variant.job_id, variant.state) == \
        ("v", "v1", "j1", ("planner", "done"))
    job = parse("job_state_changed", '{"job_id": "j1", "current_step": "ad_copy_gen_kor", "status": "done"}')
    assert job is not None and (job.kind, job.row_id, job.state) == ("j", "j1", ("ad_copy_gen_kor", "done"))
    bare = parse("job_variant_state_changed", '{"job_variants_id": "v1", "job_id": "j1"}')
    assert bare is not None and bare.state is None  # a wake-up: the row is read
    assert parse("job_variant_state_changed", "not json") is None
    assert parse("job_state_changed", '{"current_step": "x"}') is None


def test_without_the_history_it_judges_from_the_notifications_and_says_so(database_with, stack):
    database = database_with(WITHOUT_HISTORY)
    app = App(database, new_tenant(), stack)
    watching = Watching(database, stack, settle=0.5)
    assert isinstance(watching.watch.source, ListenSource)
    healthy, skipped, backwards, unknown_step, unknown_status, early, behind = (app.create_job() for _ in range(7))
    app.move(healthy, WALK)
    app.move_job(healthy, JOB_STEPS)
    app.move(skipped, WALK[:4] + WALK[6:], variants=(2,))  # vlm_analyze done -> planner: yolo_detect skipped
    app.move(backwards, WALK[:8] + [("vlm_analyze", "running")], variants=(1,))
    app.move(unknown_step, WALK[:4] + [("vlm_analyse", "running")], variants=(2,))
    app.move(unknown_status, WALK[:2] + [("vlm_analyze", "in_progress")], variants=(1,))
    app.move(early, WALK[:-2])
    app.move(early, WALK[-2:], variants=(1,))
    app.move_job(early, [("ad_copy_gen_kor", "done")])  # variant #2 is still at readability_eval
    app.move(behind, WALK[:-1])
    with app.conn.cursor() as cur:  # the aggregate trigger's race: the last variant's completion is not seen
        cur.execute("ALTER TABLE jobs_variants DISABLE TRIGGER job_completion")
        cur.execute("UPDATE jobs_variants SET status = 'done' WHERE job_id = %s", (behind.job_id,))
        cur.execute("ALTER TABLE jobs_variants ENABLE TRIGGER job_completion")
    app.conn.commit()
    jobs = [healthy, skipped, backwards, unknown_step, unknown_status, early, behind]
    watching.until(watching.judged(j.job_id for j in jobs))
    verdicts = watching.by_job()
    assert (verdicts[healthy.job_id].outcome, verdicts[healthy.job_id].violations) == ("completed", [])
    assert kinds(verdicts[skipped.job_id])[0] == (FailureKind.SKIPPED_STEP, "yolo_detect", 2)
    assert kinds(verdicts[backwards.job_id])[0] == (FailureKind.BACKWARDS, "vlm_analyze", 1)
    assert kinds(verdicts[unknown_step.job_id]) == [(FailureKind.UNKNOWN_STEP, "vlm_analyse", 2)]
    assert kinds(verdicts[unknown_status.job_id]) == [(FailureKind.UNKNOWN_STATUS, "vlm_analyze", 1)]
    assert kinds(verdicts[early.job_id])[0][:2] == (FailureKind.OUT_OF_ORDER, "ad_copy_gen_kor")
    assert kinds(verdicts[behind.job_id]) == [(FailureKind.JOB_FINAL_STATE, None, None)]
    assert "- yolo_detect running" in verdicts[skipped.job_id].violations[0].detail
    totals = watching.stop()
    assert f"source: {DESCRIPTION}" in totals.notes
    assert totals.writes > 0 and totals.queries > 0


def test_every_fault_the_notifications_show_is_reported_and_the_rest_is_not_made_up(database_with, tmp_path, stack):
    """The reference pipeline's faults among healthy jobs. A state written twice (the `duplicate` fault, the
    job-level double trigger) sends no notification: LISTEN alone cannot see it, and says nothing false instead."""
    database = database_with(WITHOUT_HISTORY)
    definition = loader.load_definition(short_timeouts(tmp_path))
    tenant = new_tenant()
    app = App(database, tenant, stack)
    watching = Watching(database, stack, definition=definition, max_retries=1, settle=2.0, source="listen")
    faults = [{**fault, "jobs": [ordinal]} for ordinal, (fault, _) in FAULTS.items()]
    faults += [{**fault, "jobs": [ordinal]} for ordinal, fault in {**FAILS, **HEALTHY_FAULTS}.items()]
    worker = pipeline(database, tenant, stack, definition, faults, max_retries=3)
    jobs = [app.create_job(variants=2) for _ in range(20)]
    watching.until(watching.judged(j.job_id for j in jobs))
    by_ordinal = {worker.shared.book.ordinal(j.job_id): j.job_id for j in jobs}
    assert sorted(by_ordinal) == list(range(1, 21))
    verdicts = watching.by_job()
    invisible = {ordinal for ordinal, (fault, _) in FAULTS.items() if fault["kind"] in ("duplicate",
                                                                                          "duplicate_trigger")}
    assert invisible == {6, 10}
    for ordinal, job_id in by_ordinal.items():
        verdict = verdicts[job_id]
        found = [(f.kind, f.step, f.creation_order) for f in verdict.violations]
        if ordinal in FAULTS and ordinal not in invisible:
            assert verdict.outcome == "violated", (ordinal, verdict.retries)
            assert found[0] == FAULTS[ordinal][1], (ordinal, found)
        elif ordinal in FAILS:
            assert (verdict.outcome, found) == ("failed", []), ordinal
            assert verdict.end_state == ("ocr_eval", "failed")
        else:
            assert (verdict.outcome, found) == ("completed", []), (ordinal, [f.text() for f in verdict.violations])
    assert sum(1 for v in verdicts.values() if v.job_id in by_ordinal.values()) == 20


def test_a_write_no_notification_told_of_is_found_by_the_reconciling_read(database_with, stack):
    """The notify trigger off for one write: the next reconciling read finds the rows where they are and takes the
    jump as a gap, not as a skip or a step left unfinished; a job whose last variant write was silent completes."""
    database = database_with(WITHOUT_HISTORY)
    app = App(database, new_tenant(), stack)
    watching = Watching(database, stack, settle=0.5, source="listen")
    source = watching.watch.source
    assert isinstance(source, ListenSource)
    gap, silent_end = app.create_job(), app.create_job()

    def quietly(job, state) -> None:
        with app.conn.cursor() as cur:
            cur.execute("ALTER TABLE jobs_variants DISABLE TRIGGER job_variant_state_changed")
            cur.execute("UPDATE jobs_variants SET current_step = %s, status = %s WHERE job_id = %s",
                        (*state, job.job_id))
            cur.execute("ALTER TABLE jobs_variants ENABLE TRIGGER job_variant_state_changed")
        app.conn.commit()

    app.move(gap, WALK[:3])  # img_gen running, done; vlm_analyze running
    app.move(silent_end, WALK[:-1])
    before = source.reconciled
    quietly(gap, ("yolo_detect", "running"))  # vlm_analyze done and yolo_detect's start: never notified
    quietly(silent_end, WALK[-1])  # the job row still follows (its own trigger), the variants are silent
    until(lambda: source.reconciled >= before + 4, "the reconciling read found the 4 silent writes")
    app.move(gap, WALK[5:])
    app.move_job(gap, JOB_STEPS)
    app.move_job(silent_end, JOB_STEPS)
    watching.until(watching.judged([gap.job_id, silent_end.job_id]))
    verdicts = watching.by_job()
    assert (verdicts[gap.job_id].outcome, verdicts[gap.job_id].violations) == ("completed", [])
    assert (verdicts[silent_end.job_id].outcome, verdicts[silent_end.job_id].violations) == ("completed", [])


def test_notifications_without_a_state_are_wake_ups_for_a_read(database_with, stack):
    database = database_with(WITHOUT_HISTORY + IDS_ONLY)
    app = App(database, new_tenant(), stack)
    watching = Watching(database, stack, settle=0.5, source="listen")
    healthy, unknown = app.create_job(), app.create_job()
    app.move(healthy, WALK)
    app.move_job(healthy, JOB_STEPS)
    app.move(unknown, WALK[:2] + [("vlm_analyze", "in_progress")], variants=(1,))
    watching.until(watching.judged([healthy.job_id, unknown.job_id]))
    verdicts = watching.by_job()
    assert (verdicts[healthy.job_id].outcome, kinds(verdicts[healthy.job_id])) == ("completed", []), \
        [f.text() for f in verdicts[healthy.job_id].violations]
    assert kinds(verdicts[unknown.job_id]) == [(FailureKind.UNKNOWN_STATUS, "vlm_analyze", 1)]


def test_a_role_with_select_on_the_pipeline_tables_only_watches_with_listen(database_with, stack):
    database = database_with(WITHOUT_HISTORY)
    role = f"ye_watch_{uuid.uuid4().hex[:8]}"
    with contextlib.closing(database.connect(autocommit=True)) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE ROLE "{role}" LOGIN')
        cur.execute(f'GRANT SELECT ON jobs, jobs_variants TO "{role}"')

    def drop() -> None:
        with contextlib.closing(database.connect(autocommit=True)) as conn, conn.cursor() as cur:
            cur.execute(f'DROP OWNED BY "{role}"')
            cur.execute(f'DROP ROLE "{role}"')

    stack.callback(drop)
    app = App(database, new_tenant(), stack)
    watching = Watching(Database(database.url.set(username=role)), stack, settle=0.5)
    healthy, broken = walked(app), app.create_job()
    app.move(broken, WALK[:4] + [("planner", "running")])
    watching.until(watching.judged([healthy.job_id, broken.job_id]))
    verdicts = watching.by_job()
    assert verdicts[healthy.job_id].outcome == "completed"
    assert kinds(verdicts[broken.job_id])[0][:2] == (FailureKind.SKIPPED_STEP, "yolo_detect")


def test_the_cli_says_which_source_and_since_or_source_history_needs_the_history(database_with, tmp_path):
    bare = database_with(WITHOUT_HISTORY)
    result = CliRunner().invoke(cli, ["watch", "--database-url", url(bare), "--since", "5m"])
    assert result.exit_code == 2, result.output
    assert "--since" in result.output and "ye-run db init --runner-only" in result.output
    result = CliRunner().invoke(cli, ["watch", "--database-url", url(bare), "--source", "history", "--duration", "1s"])
    assert result.exit_code == 2, result.output
    assert "no ye_run_history table" in result.output and "--source listen" in result.output
    result = CliRunner().invoke(cli, ["watch", "--database-url", url(bare), "--duration", "1s", "-q"])
    assert result.exit_code == 0, result.output
    assert f"watch: source: {DESCRIPTION}" in result.output  # the banner
    assert f"note: source: {DESCRIPTION}" in result.output  # the total
    full = database_with()
    result = CliRunner().invoke(cli, ["watch", "--database-url", url(full), "--duration", "1s", "-q"])
    assert result.exit_code == 0, result.output
    assert "watch: source: history table" in result.output and "note: source: history table" in result.output
    result = CliRunner().invoke(cli, ["watch", "--database-url", url(full), "--duration", "1s", "-q",
                                      "--source", "listen"])
    assert result.exit_code == 0, result.output
    assert f"watch: source: {DESCRIPTION}" in result.output

"""`ye-run watch` from the command line: the gate (--once --since), the window, a read-only role, no history."""

from __future__ import annotations

import contextlib
import json
import uuid

import pytest
from click.testing import CliRunner

from runner.cli.main import cli
from tests.conftest import new_tenant
from tests.watch.app import App, Watching
from tests.watch.test_scripted import JOB_STEPS, WALK


@pytest.fixture
def stack():
    with contextlib.ExitStack() as s:
        yield s


def url(database) -> str:
    return database.url.render_as_string(hide_password=False)


def walked(app: App):
    job = app.create_job()
    app.move(job, WALK)
    app.move_job(job, JOB_STEPS)
    return job


def judged(path) -> dict[str, dict]:
    return {r["job_id"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_once_since_judges_exactly_the_jobs_of_the_window_and_exits_0_or_1(database_with, stack, tmp_path):
    database = database_with()
    good, bad = App(database, new_tenant(), stack), App(database, new_tenant(), stack)
    old = [walked(good) for _ in range(3)]
    good.sql("UPDATE ye_run_history SET changed_at = changed_at - interval '2 hours' WHERE job_id = ANY(%s::uuid[])",
             ([j.job_id for j in old],))
    recent = [walked(good) for _ in range(2)]
    broken = bad.create_job()
    bad.move(broken, WALK[:2] + [("vlm_analyze", "done")])  # never ran: done without running is fine; then skip
    bad.move(broken, [("planner", "running")])
    gate = tmp_path / "gate.jsonl"
    result = CliRunner().invoke(cli, ["watch", "--database-url", url(database), "--once", "--since", "1h",
                                      "--jsonl", str(gate)])
    assert result.exit_code == 1, result.output
    assert set(judged(gate)) == {j.job_id for j in recent} | {broken.job_id}
    assert judged(gate)[broken.job_id]["violations"][0]["kind"] == "skipped_step"
    assert "VIOLATION [skipped_step]" in result.output and "- yolo_detect running" in result.output, result.output
    assert "3 job(s) judged: 2 completed, 0 failed (within the contract), 1 violated" in result.output
    clean = tmp_path / "clean.jsonl"
    result = CliRunner().invoke(cli, ["watch", "--database-url", url(database), "--once", "--since", "1h",
                                      "--tenant", good.tenant, "--jsonl", str(clean)])
    assert result.exit_code == 0, result.output
    assert set(judged(clean)) == {j.job_id for j in recent}
    assert all(r["outcome"] == "completed" and not r["seeded_by_ye_run"] for r in judged(clean).values())


def test_without_the_history_table_it_says_how_to_install_it_and_exits_2(database_with):
    database = database_with()
    with contextlib.closing(database.connect()) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE ye_run_history CASCADE")
        conn.commit()
    result = CliRunner().invoke(cli, ["watch", "--database-url", url(database), "--once", "--since", "5m"])
    assert result.exit_code == 2
    assert "no ye_run_history table" in result.output and "ye-run db init --runner-only" in result.output


def test_a_role_with_select_and_listen_only_watches(database_with, stack):
    database = database_with()
    role = f"ye_watch_{uuid.uuid4().hex[:8]}"
    with contextlib.closing(database.connect(autocommit=True)) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE ROLE "{role}" LOGIN')
        cur.execute(f'GRANT SELECT ON jobs, jobs_variants, ye_run_history, ye_run_seeded TO "{role}"')

    def drop() -> None:
        with contextlib.closing(database.connect(autocommit=True)) as conn, conn.cursor() as cur:
            cur.execute(f'DROP OWNED BY "{role}"')
            cur.execute(f'DROP ROLE "{role}"')

    stack.callback(drop)
    from runner.db.connect import Database

    watcher = Database(database.url.set(username=role))
    with contextlib.closing(watcher.connect()) as conn, conn.cursor() as cur:  # it really cannot write
        cur.execute("SELECT has_table_privilege('jobs', 'UPDATE'), has_table_privilege('ye_run_history', 'INSERT')")
        assert cur.fetchone() == (False, False)
    app = App(database, new_tenant(), stack)
    watching = Watching(watcher, stack, settle=0.5)
    healthy, broken = walked(app), app.create_job()
    app.move(broken, WALK[:2] + [("vlm_analyze", "running"), ("vlm_analyze", "done"), ("vlm_analyze", "done")])
    watching.until(watching.judged([healthy.job_id, broken.job_id]))
    verdicts = watching.by_job()
    assert verdicts[healthy.job_id].outcome == "completed"
    assert {str(f.kind) for f in verdicts[broken.job_id].violations} == {"duplicate_terminal"}  # judged at the first


def test_jobs_ye_run_seeded_are_flagged(database_with, stack):
    database = database_with()
    app = App(database, new_tenant(), stack)
    watching = Watching(database, stack, settle=0.5)
    job = app.create_job()
    app.sql("INSERT INTO ye_run_runs (run_id, scenario, tenant_id) VALUES ('r1', 's', %s)", (app.tenant,))
    app.sql("INSERT INTO ye_run_seeded (run_id, table_name, row_key) VALUES ('r1', 'jobs', %s::jsonb)",
            (json.dumps([job.job_id]),))
    app.move(job, WALK)
    app.move_job(job, JOB_STEPS)
    watching.until(watching.judged([job.job_id]))
    assert watching.by_job()[job.job_id].seeded

"""Telling a live run from a finished or abandoned one, and what a cleaner may then do."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli.main import cli
from runner.db import catalog, liveness, registry, requirements, schema
from runner.db.connect import Database
from tests.db.helpers import count, finish, job_row_counts, load, seeding

HERE = liveness.Owner.this_process()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack():
    with contextlib.ExitStack() as s:
        yield s


def url(db: Database) -> str:
    return db.url.render_as_string(hide_password=False)


def test_a_held_lock_is_running_whatever_else_is_recorded():
    status = liveness.classify(True, "elsewhere", 1, None, 10_000.0, 1.0, locked=True, here=HERE)
    assert status.state is liveness.State.RUNNING and not status.state.cleanable


def test_a_process_of_this_host_is_alive_or_proven_gone():
    alive = liveness.classify(False, HERE.host, HERE.pid, HERE.token, 10_000.0, 1.0, locked=False, here=HERE)
    assert alive.state is liveness.State.ALIVE
    assert HERE.token is not None
    gone_token = HERE.token.rsplit(":", 1)[0] + ":1"  # same machine, a start time this pid never had
    gone = liveness.classify(False, HERE.host, HERE.pid, gone_token, 0.0, 1000.0, locked=False, here=HERE)
    assert gone.state is liveness.State.ABANDONED and "has ended without a verdict" in gone.why


def test_another_host_is_judged_by_its_heartbeat():
    recent = liveness.classify(False, "elsewhere", 7, "b:pid:[1]:9", 5.0, 150.0, locked=False, here=HERE)
    assert recent.state is liveness.State.RECENT and "seen 5s ago" in recent.why
    silent = liveness.classify(False, "elsewhere", 7, "b:pid:[1]:9", 151.0, 150.0, locked=False, here=HERE)
    assert silent.state is liveness.State.ABANDONED


def test_finished_and_unknown_owners():
    assert liveness.classify(True, HERE.host, HERE.pid, HERE.token, 0, 1, locked=False, here=HERE).state \
        is liveness.State.FINISHED
    assert liveness.classify(False, None, None, None, 0, None, locked=False, here=HERE).state is liveness.State.UNKNOWN


def test_a_process_token_names_this_process_life():
    assert liveness.process_token(os.getpid()) == HERE.token
    assert liveness.process_token(2 ** 22 + 12345) is None  # no such pid


def _elsewhere(conn, run_id: str, silent_for: str) -> None:
    """Make a registered run look like one on another host that lost its connection `silent_for` ago."""
    with conn.cursor() as cur:
        cur.execute("UPDATE ye_run_runs SET owner_host = 'ci-runner-7', seen_at = now() - %s::interval "
                    "WHERE run_id = %s; SELECT pg_advisory_unlock_all()", (silent_for, run_id))
    conn.commit()


def test_a_run_on_another_host_seen_recently_is_kept_unless_forced(db: Database, tmp_path: Path, stack):
    s = seeding(db, load(tmp_path, "name: s\nvariants: 1\n"), tmp_path, stack=stack)
    job = s.seeder.seed_job(1)
    _elsewhere(s.conn, s.record.run_id, "5 seconds")
    refused = CliRunner().invoke(cli, ["cleanup", "--run", s.record.run_id, "--database-url", url(db)])
    assert refused.exit_code == 2 and "(recently seen: pid" in refused.stderr and "ci-runner-7" in refused.stderr
    skipped = CliRunner().invoke(cli, ["cleanup", "--older-than", "0s", "--database-url", url(db)])
    assert f"skipped run {s.record.run_id}: not finished (recently seen" in skipped.stderr
    assert job_row_counts(s.conn, job.job_id)["jobs"] == 1
    forced = CliRunner().invoke(cli, ["cleanup", "--run", s.record.run_id, "--force", "--database-url", url(db)])
    assert forced.exit_code == 0, forced.output
    assert job_row_counts(s.conn, job.job_id)["jobs"] == 0


def test_a_run_on_another_host_silent_past_its_window_is_abandoned(db: Database, tmp_path: Path, stack):
    s = seeding(db, load(tmp_path, "name: s\nvariants: 1\n"), tmp_path, stack=stack)
    job = s.seeder.seed_job(1)
    _elsewhere(s.conn, s.record.run_id, "1 hour")
    listed = CliRunner().invoke(cli, ["runs", "--database-url", url(db)])
    (line,) = [line for line in listed.stdout.splitlines() if line.startswith(s.record.run_id)]
    assert line.endswith(" abandoned")
    cleaned = CliRunner().invoke(cli, ["cleanup", "--run", s.record.run_id, "--database-url", url(db)])
    assert cleaned.exit_code == 0, cleaned.output
    assert job_row_counts(s.conn, job.job_id)["jobs"] == 0


def _orphan_report(db: Database, tmp_path: Path, **extra: object) -> tuple[str, Path]:
    """A crafted report naming an image_assets row with no tenant_id and no job_id (somebody else's)."""
    orphan = str(uuid.uuid4())
    with contextlib.closing(db.connect()) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO image_assets (image_asset_id, image_type, image_url) VALUES (%s, 'generated', "
                    "'file:///somebody-elses.png')", (orphan,))
        conn.commit()
    report = tmp_path / "crafted.json"
    report.write_text(json.dumps({"run_id": "x", "scenario": "x", "tenant_id": "ye_pipeline_test_tenant",
                                  "rows": {"image_assets": [[orphan]], **extra}}))
    return orphan, report


def _assets(db: Database, asset_id: str) -> int:
    with contextlib.closing(db.connect()) as conn:
        return count(conn, "select count(*) from image_assets where image_asset_id = %s", (asset_id,))


def test_a_report_naming_a_row_with_null_tenant_and_job_is_refused(database_with, tmp_path: Path):
    db = database_with()
    with contextlib.closing(db.connect()) as conn, conn.cursor() as cur:  # a database without ye-run's registry
        cur.execute("DROP TABLE ye_run_seeded, ye_run_runs")
        conn.commit()
    orphan, report = _orphan_report(db, tmp_path)
    refused = CliRunner().invoke(cli, ["cleanup", "--report", str(report), "--database-url", url(db)])
    assert refused.exit_code == 2, refused.output
    assert "image_assets" in refused.stderr and "NULL proves nothing" in refused.stderr
    assert _assets(db, orphan) == 1


def test_with_a_registry_a_report_only_names_a_registered_run(db: Database, tmp_path: Path, stack):
    """Was: a made-up run id with a live run's rows (or its registry entry) in the report deleted them."""
    orphan, report = _orphan_report(db, tmp_path)
    refused = CliRunner().invoke(cli, ["cleanup", "--report", str(report), "--database-url", url(db)])
    assert refused.exit_code == 2 and "run 'x' is not in this database's run registry" in refused.stderr
    s = seeding(db, load(tmp_path, "name: s\nvariants: 1\n"), tmp_path, stack=stack)
    job = s.seeder.seed_job(1)
    crafted = tmp_path / "registry.json"
    crafted.write_text(json.dumps({"run_id": "x", "scenario": "x", "tenant_id": s.record.tenant_id,
                                   "rows": {"ye_run_runs": [[s.record.run_id]], "jobs": [[job.job_id]]}}))
    for text in (crafted, report):
        assert CliRunner().invoke(cli, ["cleanup", "--report", str(text), "--database-url", url(db)]).exit_code == 2
    live = tmp_path / "live.json"  # the live run's own record: its lock refuses it
    live.write_text(json.dumps(s.record.to_json()))
    running = CliRunner().invoke(cli, ["cleanup", "--report", str(live), "--database-url", url(db)])
    assert running.exit_code == 2 and "has not finished (running" in running.stderr
    assert job_row_counts(s.conn, job.job_id)["jobs"] == 1 and _assets(db, orphan) == 1
    with contextlib.closing(db.connect()) as conn:
        assert count(conn, "select count(*) from ye_run_runs where run_id = %s", (s.record.run_id,)) == 1


def test_an_older_registry_is_not_written_and_db_init_brings_it_up_to_date(fresh_database, tmp_path: Path):
    db = fresh_database()
    with contextlib.closing(db.connect()) as conn:
        schema.install(conn)
        with conn.cursor() as cur:  # the registry as an older ye-run installed it
            cur.execute("ALTER TABLE ye_run_runs DROP COLUMN owner_host, DROP COLUMN owner_pid, "
                        "DROP COLUMN owner_token, DROP COLUMN seen_at, DROP COLUMN stale_after, "
                        "DROP COLUMN cleanup_pending_until; COMMENT ON TABLE ye_run_runs IS 'ye-run schema 1'")
        conn.commit()
        assert requirements.registry_outdated(catalog.read(conn))
        assert not requirements.registry_available(catalog.read(conn))
    listed = CliRunner().invoke(cli, ["runs", "--database-url", url(db)])
    assert listed.exit_code == 3 and "from an older ye-run" in listed.stderr and "ye-run db init" in listed.stderr
    checked = CliRunner().invoke(cli, ["db", "check", "--database-url", url(db)])
    assert "outdated: no run owners" in checked.stdout
    assert CliRunner().invoke(cli, ["db", "init", "--runner-only", "--database-url", url(db)]).exit_code == 0
    with contextlib.closing(db.connect()) as conn:
        assert requirements.registry_available(catalog.read(conn))


def test_older_than_leaves_rows_kept_while_the_pipeline_may_still_work_on_them(db: Database, tmp_path: Path, stack):
    """Was: a run that had kept its rows as pending (the pipeline still in planner) was cleaned by the next
    `cleanup --older-than` under the pipeline's feet."""
    s = seeding(db, load(tmp_path, "name: s\nvariants: 1\n"), tmp_path, stack=stack)
    job = s.seeder.seed_job(1)
    registry.pend(s.conn, s.record.run_id, 90.0)
    finish(s)
    skipped = CliRunner().invoke(cli, ["cleanup", "--older-than", "0s", "--database-url", url(db)])
    assert f"skipped run {s.record.run_id}: not finished (pending: the pipeline may still be working" \
           in skipped.stderr
    assert job_row_counts(s.conn, job.job_id)["jobs"] == 1
    forced = CliRunner().invoke(cli, ["cleanup", "--older-than", "0s", "--force", "--database-url", url(db)])
    assert forced.exit_code == 0 and f"cleanup of run {s.record.run_id}" in forced.stdout
    assert job_row_counts(s.conn, job.job_id)["jobs"] == 0


def test_a_process_another_user_cannot_see_is_not_taken_for_gone():
    """/proc refuses (EACCES, hidepid) another user's process: that says nothing of whether it runs, so the
    heartbeat decides (was: taken as gone, and a live run reconnecting was cleaned by another user's cleaner)."""
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root and runuser to look at this process as another user")
    here = liveness.Owner.this_process()
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from runner.db import liveness as l; "
            "o = l.Owner(sys.argv[2], int(sys.argv[3]), sys.argv[4]); "
            "print(l.process_alive(o.pid, o.token), l.classify(False, o.host, o.pid, o.token, 5.0, 150.0, "
            "locked=False, here=l.Owner(o.host, 1, o.token)).state.name)")
    seen = subprocess.run(["runuser", "-u", "nobody", "--", sys.executable, "-c", code, str(ROOT), here.host,
                           str(here.pid), str(here.token)], capture_output=True, text=True, timeout=60)
    assert seen.stdout.split() == ["None", "RECENT"], seen.stdout + seen.stderr
    assert liveness.process_alive(2 ** 22 + 12345, "x:y:z") is False  # no such pid: gone

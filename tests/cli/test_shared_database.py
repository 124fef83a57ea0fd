"""A cleaner beside a live run on one database: the live run's rows are never touched; a killed run's are.

The victim is a real `ye-run` process (interval mode, the reference pipeline), the cleaner the CLI.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import threading
from pathlib import Path

from click.testing import CliRunner

from runner import resources
from runner.cli.main import cli
from runner.db.connect import Database
from tests.cli.test_run_cli import _process, scenario, url
from tests.db.helpers import count

ENDLESS = ("simulate_img_gen: true\ncleanup: {cleanup}\nvariants: 2\n"
           "mode: {{type: interval, jobs: 1000, interval: 50ms, max_in_flight: 4}}\n"
           "reference_pipeline: {{latency: {{default: 5ms}}}}\n")


def _seeded_jobs(db: Database, run_id: str | None = None) -> tuple[str, str, int] | None:
    """(run id, tenant, jobs seeded) of the newest registered run (or of `run_id`)."""
    with contextlib.closing(db.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT r.run_id, r.tenant_id, (SELECT count(*) FROM ye_run_seeded s WHERE s.run_id = r.run_id "
                    "AND s.table_name = 'jobs') FROM ye_run_runs r WHERE %s IS NULL OR r.run_id = %s "
                    "ORDER BY r.started_at DESC LIMIT 1", (run_id, run_id))
        return cur.fetchone()


def _wait_for_jobs(db: Database, proc: subprocess.Popen, at_least: int, run_id: str | None = None,
                   stop: threading.Event | None = None) -> tuple[str, str, int]:
    stop = stop or threading.Event()
    while True:
        found = _seeded_jobs(db, run_id)
        if found is not None and found[2] >= at_least:
            return found
        assert proc.poll() is None, "the run ended before it had seeded its jobs"
        stop.wait(0.05)


def _tenant_jobs(db: Database, tenant: str) -> int:
    with contextlib.closing(db.connect()) as conn:
        return count(conn, "select count(*) from jobs where tenant_id = %s", (tenant,))


def test_cleaners_never_touch_a_live_run_which_goes_on_unharmed(database_with, tmp_path: Path):
    db = database_with()
    report = tmp_path / "victim.json"
    proc = _process(db, scenario(tmp_path, "victim", ENDLESS.format(cleanup="always")), "--reference-pipeline",
                    "--json", str(report), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        run_id, tenant, seeded = _wait_for_jobs(db, proc, 2)
        older = CliRunner().invoke(cli, ["cleanup", "--older-than", "0s", "--database-url", url(db)])
        forced = CliRunner().invoke(cli, ["cleanup", "--run", run_id, "--force", "--database-url", url(db)])
        by_tenant = CliRunner().invoke(cli, ["cleanup", "--tenant", tenant, "--force", "--database-url", url(db)])
        listed = CliRunner().invoke(cli, ["runs", "--database-url", url(db)])
        _wait_for_jobs(db, proc, seeded + 3, run_id)  # it goes on seeding into a tenant that is still there
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert older.exit_code == 0, older.output
    assert f"skipped run {run_id}: not finished (running: its process" in older.stderr
    assert "deleted" not in older.stdout
    assert forced.exit_code == 2 and "has not finished (running" in forced.stderr
    assert by_tenant.exit_code == 2 and f"refusing to clean up tenant {tenant}: a run on it is still going" \
        in by_tenant.stderr
    (line,) = [line for line in listed.stdout.splitlines() if line.startswith(run_id)]
    assert line.endswith(" running")
    assert proc.returncode == 130, err.decode()
    doc = json.loads(report.read_text())
    resources.validator("report.schema.json").validate(doc)
    (result,) = doc["scenarios"]
    assert result["outcome"] == "interrupted" and result.get("error") is None
    assert len(result["jobs"]) >= seeded + 3
    assert all(job["outcome"] in ("passed", "interrupted") for job in result["jobs"])
    assert result["cleanup"]["applied"] and _tenant_jobs(db, tenant) == 0  # its own cleanup, once it ended


def test_a_killed_run_is_abandoned_and_cleaned_at_once(database_with, tmp_path: Path):
    db = database_with()
    proc = _process(db, scenario(tmp_path, "killed", ENDLESS.format(cleanup="always")), "--reference-pipeline",
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run_id, tenant, _ = _wait_for_jobs(db, proc, 2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    finally:
        proc.kill()
    assert _tenant_jobs(db, tenant) >= 2  # killed: no cleanup of its own
    listed = CliRunner().invoke(cli, ["runs", "--database-url", url(db)])
    (line,) = [line for line in listed.stdout.splitlines() if line.startswith(run_id)]
    assert " no verdict " in line and line.endswith(" abandoned")
    cleaned = CliRunner().invoke(cli, ["cleanup", "--older-than", "0s", "--database-url", url(db)])
    assert cleaned.exit_code == 0, cleaned.output
    assert f"cleanup of run {run_id}" in cleaned.stdout and "skipped" not in cleaned.stderr
    assert _tenant_jobs(db, tenant) == 0

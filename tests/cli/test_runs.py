"""`ye-run runs` and `ye-run cleanup --older-than`: what old runs kept, removed through the guarded path."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from click.testing import CliRunner

from runner.cli.main import cli
from tests.db.helpers import count
from tests.engine.helpers import run


def test_runs_lists_what_was_kept_and_older_than_removes_it(database_with, tmp_path: Path):
    database = database_with()
    url = database.url.render_as_string(hide_password=False)
    name = "kept-by-a-scenario-whose-name-is-longer-than-any-column-was"
    kept = run(database, tmp_path, f"name: {name}\nsimulate_img_gen: true\n").result
    assert kept.outcome == "passed" and kept.cleanup is None  # the helper keeps rows (cleanup: never)
    listed = CliRunner().invoke(cli, ["runs", "--kept", "--database-url", url])
    assert listed.exit_code == 0, listed.output
    (line,) = [l for l in listed.stdout.splitlines() if l.startswith(kept.run_id)]
    assert line.split()[1:3] == [name, kept.jobs[0].seeded.tenant_id]  # whole, not cut to a column
    assert " passed " in line and line.split()[-2] != "0" and line.split()[-1] == "finished"
    young = CliRunner().invoke(cli, ["cleanup", "--older-than", "1d", "--database-url", url])
    assert young.exit_code == 0 and "no run older than 24h kept rows" in young.stdout
    old = CliRunner().invoke(cli, ["cleanup", "--older-than", "0", "--database-url", url])
    assert old.exit_code == 0 and f"cleanup of run {kept.run_id}" in old.stdout
    with contextlib.closing(database.connect()) as conn:
        assert count(conn, "select count(*) from jobs where job_id = %s", (kept.jobs[0].job_id,)) == 0
    after = CliRunner().invoke(cli, ["runs", "--kept", "--database-url", url])
    assert kept.run_id not in after.stdout
    # the run is listed with the rows its cleanup deleted (seeded, dependent, its history), as the cleanup said
    deleted = re.search(r"deleted (\d+) row", old.stdout)
    assert deleted, old.stdout
    (line,) = [l for l in CliRunner().invoke(cli, ["runs", "--database-url", url]).stdout.splitlines()
               if l.startswith(kept.run_id)]
    assert line.split()[-3:] == ["0", deleted.group(1), "finished"]
    assert int(deleted.group(1)) > 4  # more than the root rows it kept: variants, inputs, what the pipeline wrote
    bad = CliRunner().invoke(cli, ["cleanup", "--older-than", "soon", "--database-url", url])
    assert bad.exit_code == 2 and "--older-than 'soon'" in bad.stderr


def test_a_registry_from_an_older_ye_run_still_cleans_up_and_lists(database_with, tmp_path: Path):
    """A registry installed before `rows_deleted` existed (no `db init` since): cleanup and `runs` still work."""
    database = database_with()
    with contextlib.closing(database.connect()) as conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE ye_run_runs DROP COLUMN rows_deleted")
        conn.commit()
    url = database.url.render_as_string(hide_password=False)
    kept = run(database, tmp_path, "name: old-registry\nsimulate_img_gen: true\n").result
    cleaned = CliRunner().invoke(cli, ["cleanup", "--run", kept.run_id, "--database-url", url])
    assert cleaned.exit_code == 0, cleaned.output
    listed = CliRunner().invoke(cli, ["runs", "--database-url", url])
    assert listed.exit_code == 0, listed.output
    (line,) = [l for l in listed.stdout.splitlines() if l.startswith(kept.run_id)]
    assert line.split()[-2:] == ["0", "finished"]  # nothing kept; the rows deleted unknown to this registry

"""A crash is never a pass: bugs, lost connections, refusals and failed cleanups are errors everywhere."""

from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path

import pytest

from runner import resources
from runner.db.connect import Database
from runner.engine import checks
from runner.engine.events import JobSeeded
from tests.cli.test_run_cli import JUNIT_XSD, invoke, scenario, url
from tests.db.helpers import count

SIMULATED = "simulate_img_gen: true\ntimeouts: {step: 20s, stall: 20s, job: 60s}\n"


def _reports(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    junit, report = tmp_path / "junit.xml", tmp_path / "report.json"
    return junit, report, ["--junit", str(junit), "--json", str(report)]


def _registry_outcome(db: Database, run_id: str) -> str | None:
    with contextlib.closing(db.connect()) as conn, conn.cursor() as cur:
        cur.execute("select outcome from ye_run_runs where run_id = %s", (run_id,))
        row = cur.fetchone()
    return row[0] if row else None


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_a_bug_is_an_error_everywhere_with_exit_70_and_a_saved_traceback(db: Database, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("injected bug")

    monkeypatch.setattr(checks, "integrity", broken)
    monkeypatch.setenv("YE_CRASH_DIR", str(tmp_path / "crashes"))
    junit, report, options = _reports(tmp_path)
    result = invoke("run", scenario(tmp_path, "buggy", SIMULATED), "--database-url", url(db),
                    "--reference-pipeline", *options)
    assert result.exit_code == 70, result.output
    assert "PASSED" not in result.stdout
    assert "buggy: ERROR - 1 job(s)" in result.stdout
    assert "internal error (a bug in ye-run) while running scenario 'buggy': ZeroDivisionError: injected bug" \
           in result.stdout
    (saved,) = (tmp_path / "crashes").iterdir()
    assert "ZeroDivisionError: injected bug" in saved.read_text() and str(saved) in result.stdout
    doc = json.loads(report.read_text())
    resources.validator("report.schema.json").validate(doc)
    assert doc["exit_code"] == 70 and doc["scenarios"][0]["outcome"] == "error"
    JUNIT_XSD.validate(str(junit))
    assert "<error" in junit.read_text() and "injected bug" in junit.read_text()
    assert _registry_outcome(db, doc["scenarios"][0]["run"]["run_id"]) == "error"


def test_a_bug_outside_a_scenario_is_one_line_and_exit_70(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from runner.scenario import loader

    def broken(*args):
        raise KeyError("injected")

    monkeypatch.setattr(loader, "load_instances", broken)
    monkeypatch.setenv("YE_CRASH_DIR", str(tmp_path / "crashes"))
    result = invoke("validate", scenario(tmp_path, "x", ""))
    assert result.exit_code == 70
    line = _one_error_line(result.stderr)
    assert line.startswith("ye-run: internal error (a bug in ye-run): KeyError: 'injected'; traceback in ")
    assert len(list((tmp_path / "crashes").iterdir())) == 1


def test_a_read_only_database_is_exit_3_with_the_cause_and_nothing_seeded(db: Database, tmp_path: Path):
    junit, report, options = _reports(tmp_path)
    read_only = db.url.update_query_dict({"options": "-c default_transaction_read_only=on"}).render_as_string(
        hide_password=False)
    result = invoke("run", scenario(tmp_path, "ro", SIMULATED), "--database-url", read_only,
                    "--reference-pipeline", *options)
    assert result.exit_code == 3, result.output
    assert "PASSED" not in result.output
    assert "the database accepts only reads on this connection (cannot execute INSERT in a read-only " \
           "transaction)" in result.output
    doc = json.loads(report.read_text())
    assert doc["exit_code"] == 3 and doc["scenarios"][0]["outcome"] == "error"
    assert doc["scenarios"][0]["jobs"] == []
    assert "<error" in junit.read_text()


@pytest.fixture
def role_without_grants(db: Database):
    name = f"ye_nogrant_{uuid.uuid4().hex[:8]}"
    with contextlib.closing(db.connect(autocommit=True)) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE ROLE "{name}" LOGIN')
    try:
        yield db.url.set(username=name, password=None).render_as_string(hide_password=False)
    finally:
        with contextlib.closing(db.connect(autocommit=True)) as conn, conn.cursor() as cur:
            cur.execute(f'DROP OWNED BY "{name}"')
            cur.execute(f'DROP ROLE "{name}"')


def test_a_role_without_grants_is_exit_3_naming_the_refusal(db: Database, tmp_path: Path, role_without_grants: str):
    junit, report, options = _reports(tmp_path)
    result = invoke("run", scenario(tmp_path, "nogrant", SIMULATED), "--database-url", role_without_grants,
                    "--no-reference-pipeline", *options)
    assert result.exit_code == 3, result.output
    # refused once, before anything is seeded: the login may not write what every scenario writes
    assert "PASSED" not in result.output and "privileges of ye_nogrant_" in result.stderr
    assert "no INSERT on jobs" in result.stderr
    doc = json.loads(report.read_text())
    assert doc["exit_code"] == 3 and "privileges of ye_nogrant_" in json.dumps(doc)
    assert all(s["outcome"] != "passed" for s in doc["scenarios"])


def test_losing_the_seeding_connection_mid_run_is_survived_and_each_job_is_seeded_once(db: Database,
                                                                                       tmp_path: Path):
    """The seeding backend is killed after the first job: the run reconnects, says so, and its verdict stands.
    (A server that stays down past the window is an error: tests/engine/test_restart.py.)"""
    from runner.engine.events import Note
    from tests.engine.helpers import run

    def kill_seeder(event) -> None:
        if isinstance(event, JobSeeded) and event.job.ordinal == 1:
            with contextlib.closing(db.connect(autocommit=True)) as conn, conn.cursor() as cur:
                cur.execute("select pg_terminate_backend(pid) from pg_stat_activity where application_name = "
                            "'ye-run' and datname = current_database() and pid <> pg_backend_pid()")

    text = "name: lost\n" + SIMULATED + "mode: {type: interval, jobs: 3, interval: 200ms}\n"
    outcome = run(db, tmp_path, text, handlers=[kill_seeder])
    result = outcome.result
    assert result.outcome == "passed", [f.text() for f in result.all_failures] or result.error
    assert len(result.jobs) == 3 and result.reconnects == 1
    notes = [e.text for e in outcome.events if isinstance(e, Note)]
    assert any(n.startswith("database unreachable, retrying") for n in notes)
    assert any(n.startswith("reconnected after") for n in notes)
    with contextlib.closing(db.connect()) as conn:
        assert count(conn, "select count(*) from jobs where tenant_id = %s", (result.record.tenant_id,)) == 3


def test_an_asset_dir_that_cannot_be_made_is_bad_input_before_any_write(db: Database, tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with contextlib.closing(db.connect()) as conn:
        before = count(conn, "select count(*) from ye_run_runs")
    result = invoke("run", scenario(tmp_path, "assets", SIMULATED), "--database-url", url(db),
                    "--asset-dir", str(blocker / "sub"))
    assert result.exit_code == 2, result.output
    line = _one_error_line(result.stderr)
    assert "$.images: cannot store the image in the asset directory" in line and result.stdout == ""
    with contextlib.closing(db.connect()) as conn:
        assert count(conn, "select count(*) from ye_run_runs") == before


def test_a_cleanup_that_is_refused_is_said_after_the_verdict_and_the_run_exits_2(database_with, tmp_path: Path):
    """Rows of another tenant hang off the job: cleanup refuses. The verdict (the checks held) was reported first
    and stands; the cleanup's own line says what went wrong, and the run may not exit 0."""
    database = database_with("""
        INSERT INTO tenants (tenant_id) VALUES ('acme_production');
        CREATE FUNCTION foreign_asset() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO image_assets (image_type, image_url, tenant_id, job_id)
              VALUES ('generated', 'x', 'acme_production', NEW.job_id); RETURN NEW; END $$;
        CREATE TRIGGER foreign_asset AFTER INSERT ON job_inputs FOR EACH ROW EXECUTE FUNCTION foreign_asset();""")
    path = scenario(tmp_path, "tangled", SIMULATED + "cleanup: always\n")
    junit, report, options = _reports(tmp_path)
    result = invoke("run", path, "--database-url", url(database), "--reference-pipeline", *options)
    assert result.exit_code == 2, result.output
    out = result.stdout
    assert out.index("tangled: PASSED - 1 job(s)") < out.index("  cleanup failed: refusing to clean up")
    assert "1 scenarios: 1 passed, 0 failed, 0 errors, 0 not run; 1 cleanup(s) not done" in out
    doc = json.loads(report.read_text())
    (entry,) = doc["scenarios"]
    assert doc["exit_code"] == 2 and doc["totals"]["cleanup_failed"] == 1 and entry["outcome"] == "passed"
    assert entry["cleanup"]["error"].startswith("cleanup failed: refusing to clean up")
    assert not entry["cleanup"]["applied"]
    assert _registry_outcome(database, entry["run"]["run_id"]) == "passed"


def test_a_fixture_cannot_seed_a_customer_tenant(db: Database, tmp_path: Path):
    path = scenario(tmp_path, "fixture-tenant", SIMULATED + "fixtures:\n  - table: tenants\n"
                                                            "    rows: [{tenant_id: acme_production}]\n")
    with contextlib.closing(db.connect()) as conn:
        before = count(conn, "select count(*) from tenants")
    result = invoke("run", path, "--database-url", url(db), "--reference-pipeline")
    assert result.exit_code == 2, result.output
    line = _one_error_line(result.stderr)
    assert line.startswith(f"{path}:7:24: $.fixtures[0].rows[0].tenant_id: refusing to seed a fixture row for "
                           "tenant 'acme_production'"), line
    with contextlib.closing(db.connect()) as conn:
        assert count(conn, "select count(*) from tenants") == before


def test_an_unknown_extra_column_is_the_authors_typo(db: Database, tmp_path: Path):
    path = scenario(tmp_path, "extra", SIMULATED + "job_inputs: {extra: {desc_korr: x}}\n")
    result = invoke("run", path, "--database-url", url(db), "--reference-pipeline")
    assert result.exit_code == 2, result.output
    assert _one_error_line(result.stderr) == (f"{path}:5:33: $.job_inputs.extra.desc_korr: table job_inputs has no "
                                              "column 'desc_korr'; did you mean 'desc_kor'?")


def test_a_malformed_cleanup_report_is_exit_2_in_one_line(db: Database, tmp_path: Path):
    cases = {
        "not-json.json": "{not json",
        "wrong-shape.json": json.dumps({"scenarios": [{"run": {"record": {"run_id": 1, "rows": []}}}]}),
        "bad-keys.json": json.dumps({"run_id": "r", "scenario": "s", "tenant_id": "ye_t", "rows": {"jobs": "x"}}),
        "empty.json": json.dumps({"scenarios": []}),
        "deep.json": "[" * 100_000,  # was a RecursionError (exit 70)
        "infinite.json": '{"run_id": "r", "scenario": "s", "tenant_id": "ye_t", "rows": {"jobs": [[Infinity]]}}',
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        result = invoke("cleanup", "--report", str(path), "--database-url", url(db))
        assert result.exit_code == 2, (name, result.output)
        assert _one_error_line(result.stderr).startswith(f"ye-run: error: {path}: "), name


def test_cleanup_by_a_whole_json_report(db: Database, tmp_path: Path):
    path = scenario(tmp_path, "kept", SIMULATED + "cleanup: never\n")
    report = tmp_path / "report.json"
    assert invoke("run", path, "--database-url", url(db), "--reference-pipeline", "--json", str(report)).exit_code == 0
    job_id = json.loads(report.read_text())["scenarios"][0]["jobs"][0]["job_id"]
    result = invoke("cleanup", "--report", str(report), "--database-url", url(db))
    assert result.exit_code == 0, result.output
    with contextlib.closing(db.connect()) as conn:
        assert count(conn, "select count(*) from jobs where job_id = %s", (job_id,)) == 0


def test_console_and_junit_never_carry_control_characters_from_the_database(database_with, tmp_path: Path):
    """The pipeline may write anything as a step name; the terminal must not obey it, XML must hold it."""
    database = database_with("""
        CREATE FUNCTION evil() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.current_step = 'planner' AND NEW.creation_order = 1 THEN
              NEW.current_step := E'pl\\x1b[2J\\x01anner'; END IF; RETURN NEW; END $$;
        CREATE TRIGGER evil BEFORE UPDATE ON jobs_variants FOR EACH ROW EXECUTE FUNCTION evil();""")
    junit, report, options = _reports(tmp_path)
    path = scenario(tmp_path, "evil", "simulate_img_gen: true\ntimeouts: {step: 1s, stall: 20s, job: 60s}\n")
    result = invoke("run", path, "--database-url", url(database), "--reference-pipeline", *options)
    assert result.exit_code == 1, result.output
    assert "\x1b[2J" not in result.stdout and "pl\\x1b[2J\\x01anner" in result.stdout
    JUNIT_XSD.validate(str(junit))  # well-formed and valid despite the control characters
    assert "pl\\x1b[2J\\x01anner" in junit.read_text()


def test_ctrl_c_while_the_scenarios_load_still_writes_every_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The interrupt lands before any scenario starts (here: while the files load): each report asked for says
    so, exit 130 in it, and the console script turns it into one line."""
    import click

    from runner.cli.main import cli
    from runner.report import html
    from runner.scenario import suite

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(suite, "load_valid", interrupted)
    junit, report, options = _reports(tmp_path)
    page = tmp_path / "report.html"
    with pytest.raises(click.exceptions.Abort):  # click's form of it; main() prints one line and exits 130
        cli.main(["run", scenario(tmp_path, "never", SIMULATED), *options, "--html", str(page)],
                 standalone_mode=False)
    doc = json.loads(report.read_text())
    resources.validator("report.schema.json").validate(doc)
    assert doc["exit_code"] == 130 and doc["scenarios"] == [] and "interrupted before the run started" in doc["error"]
    JUNIT_XSD.validate(str(junit))
    assert "interrupted before the run started" in junit.read_text()
    assert 'id="verdict">INTERRUPTED<' in page.read_text() and html.render(doc) == page.read_text()


def test_a_role_refused_at_a_later_write_is_exit_3_naming_the_refusal(db: Database, tmp_path: Path,
                                                                      role_without_grants: str):
    """A login that may seed but not what comes after (here: SELECT on the pipeline's tables) passes the up-front
    check; the refusal is then the scenario's error, named, never a pass."""
    role = role_without_grants.split("://", 1)[1].split("@", 1)[0]
    with contextlib.closing(db.connect(autocommit=True)) as conn, conn.cursor() as cur:
        cur.execute(f'GRANT INSERT ON jobs, image_assets, job_inputs, jobs_variants TO "{role}"')
    junit, report, options = _reports(tmp_path)
    result = invoke("run", scenario(tmp_path, "later", SIMULATED), "--database-url", role_without_grants,
                    "--no-reference-pipeline", *options)
    assert result.exit_code == 3, result.output
    assert "PASSED" not in result.output and "permission denied" in result.output
    doc = json.loads(report.read_text())
    assert doc["exit_code"] == 3 and all(s["outcome"] != "passed" for s in doc["scenarios"])

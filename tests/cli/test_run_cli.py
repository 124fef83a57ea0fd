"""`ye-run run` as users meet it: exit codes, reports that validate, signals, output modes."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xmlschema
from click.testing import CliRunner

from runner import resources
from runner.cli.main import cli
from runner.db.connect import Database
from tests.db.helpers import count

ROOT = Path(__file__).resolve().parents[2]
JUNIT_XSD = xmlschema.XMLSchema(str(ROOT / "tests" / "report" / "junit.xsd"))


def url(db: Database) -> str:
    return db.url.render_as_string(hide_password=False)


def scenario(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\ntenant: {{id: ye_cli_test, isolate: true}}\n{text}", encoding="utf-8")
    return str(path)


def invoke(*args: str) -> object:
    return CliRunner().invoke(cli, list(args))


def test_passing_run_writes_reports_that_validate(db: Database, tmp_path: Path):
    junit, report = tmp_path / "out" / "junit.xml", tmp_path / "out" / "report.json"
    result = invoke("run", str(ROOT / "scenarios" / "smoke.yaml"), str(ROOT / "scenarios" / "expected_failure.yaml"),
                    "--database-url", url(db), "--reference-pipeline", "--junit", str(junit), "--json", str(report))
    assert result.exit_code == 0, result.output
    assert "smoke: PASSED" in result.stdout and "expected-failure: PASSED" in result.stdout
    JUNIT_XSD.validate(str(junit))
    doc = json.loads(report.read_text())
    resources.validator("report.schema.json").validate(doc)
    assert doc["exit_code"] == 0 and [s["outcome"] for s in doc["scenarios"]] == ["passed", "passed"]
    trace = doc["scenarios"][0]["jobs"][0]["variants"][0]["trace"]
    assert trace[0]["step"] == "user_img_input" and trace[-1] == {**trace[-1], "step": "iou_eval", "status": "done"}
    assert all(t["db_time"] and t["seen_time"] for t in trace)
    assert doc["scenarios"][0]["observation"]["method"] == "history"


def test_failing_run_exits_one_with_the_failure_in_every_report(db: Database, tmp_path: Path):
    path = scenario(tmp_path, "skips", "simulate_img_gen: true\nreference_pipeline: {faults: "
                                       "[{kind: skip, step: yolo_detect, variants: [2]}]}\n")
    junit, report = tmp_path / "junit.xml", tmp_path / "report.json"
    result = invoke("run", path, "--database-url", url(db), "--reference-pipeline", "--junit", str(junit),
                    "--json", str(report))
    assert result.exit_code == 1
    assert "FAIL skips › job 1 (" in result.stdout and "skipped yolo_detect" in result.stdout
    assert "remove them with: ye-run cleanup --run" in result.stdout
    JUNIT_XSD.validate(str(junit))
    failure = JUNIT_XSD.to_dict(str(junit))["testsuite"][0]["testcase"][0]["failure"][0]
    assert failure["@type"] == "skipped_step" and "variant #2" in failure["@message"]
    doc = json.loads(report.read_text())
    resources.validator("report.schema.json").validate(doc)
    assert doc["exit_code"] == 1 and doc["scenarios"][0]["jobs"][0]["failures"][0]["kind"] == "skipped_step"


def test_a_failed_scenarios_description_is_in_every_report(db: Database, tmp_path: Path):
    """The reader of a failure learns what the scenario proves, from the console to the HTML page."""
    about = "variant 2 must never skip object detection"
    path = scenario(tmp_path, "described", f"description: {about}\nsimulate_img_gen: true\n"
                    "reference_pipeline: {faults: [{kind: skip, step: yolo_detect, variants: [2]}]}\n")
    junit, report, page = tmp_path / "junit.xml", tmp_path / "report.json", tmp_path / "report.html"
    result = invoke("run", path, "--database-url", url(db), "--reference-pipeline", "--junit", str(junit),
                    "--json", str(report), "--html", str(page))
    assert result.exit_code == 1
    assert f"  description: {about}" in result.stdout.splitlines()
    properties = JUNIT_XSD.to_dict(str(junit))["testsuite"][0]["properties"]["property"]
    assert {"@name": "description", "@value": about} in properties
    assert json.loads(report.read_text())["scenarios"][0]["description"] == about
    assert about in page.read_text()
    passing = invoke("run", scenario(tmp_path, "quiet-about", f"description: {about}\nsimulate_img_gen: true\n"),
                     "--database-url", url(db), "--reference-pipeline")
    assert passing.exit_code == 0 and about not in passing.stdout  # said with a failure, not on every pass


def test_every_report_names_the_line_of_the_broken_expectation(db: Database, tmp_path: Path):
    path = scenario(tmp_path, "placed", "simulate_img_gen: true\nreference_pipeline: {faults: "
                                        "[{kind: skip, step: yolo_detect, variants: [2]}]}\n"
                                        "expect:\n  steps: [img_gen, vlm_analyze, yolo_detect, planner, overlay, "
                                        "vlm_judge, ocr_eval, readability_eval, iou_eval]\n")
    broke = f"(broke {path}:6:10: $.expect.steps)"
    junit, report, page = tmp_path / "junit.xml", tmp_path / "report.json", tmp_path / "report.html"
    result = invoke("run", path, "--database-url", url(db), "--reference-pipeline", "--junit", str(junit),
                    "--json", str(report), "--html", str(page))
    assert result.exit_code == 1
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("FAIL placed")]
    assert line.endswith(f"to planner) {broke}"), line
    failure = JUNIT_XSD.to_dict(str(junit))["testsuite"][0]["testcase"][0]["failure"][0]
    assert failure["@message"].endswith(broke) and broke in failure["$"]
    (placed,) = json.loads(report.read_text())["scenarios"][0]["jobs"][0]["failures"]
    assert placed["origin"] == {"file": path, "line": 6, "col": 10, "path": "$.expect.steps"}
    assert f"broke {path}:6:10: $.expect.steps" in page.read_text()


def test_quiet_prints_only_failures_and_verbose_every_transition(db: Database, tmp_path: Path):
    path = scenario(tmp_path, "quiet", "simulate_img_gen: true\n")
    quiet = invoke("run", "-q", path, "--database-url", url(db), "--reference-pipeline")
    assert quiet.exit_code == 0
    assert re.fullmatch(r"1 scenarios: 1 passed, 0 failed, 0 errors, 0 not run in \S+\n", quiet.stdout)
    verbose = invoke("run", "-v", path, "--database-url", url(db), "--reference-pipeline")
    assert verbose.exit_code == 0
    assert verbose.stdout.count("variant #2: ") == 19 and "job 1 job row: iou_eval done" in verbose.stdout


def test_dry_run_prints_the_plan_and_touches_nothing(tmp_path: Path):
    result = invoke("run", "--dry-run", str(ROOT / "scenarios" / "fixtures_and_sql.yaml"),
                    "--database-url", "postgresql://nobody:pw@127.0.0.1:1/nothing")
    assert result.exit_code == 0, result.output
    plan = result.stdout
    assert "scenario fixtures-and-sql" in plan and "postgresql+psycopg2://nobody:***@127.0.0.1:1/nothing" in plan
    assert "jobs_variants 3, txt_ad_copy_generations 2" in plan and "img_gen simulated by the runner" in plan
    assert "seed row:   english_ad_copy -> txt_ad_copy_generations (skipped where the database has no such table)" \
        in plan
    assert "steps:      img_gen -> vlm_analyze" in plan and "timeouts:   step 1m, stall 1m, job 5m" in plan


def test_dry_run_names_the_embedded_directory_in_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("YE_EMBEDDED_DIR", str(tmp_path / "my-pg"))
    result = invoke("run", "--dry-run", str(ROOT / "scenarios" / "smoke.yaml"))
    assert result.exit_code == 0, result.output
    assert f"database:   embedded PostgreSQL ({tmp_path / 'my-pg'})" in result.stdout
    assert not (tmp_path / "my-pg").exists()  # named, not created: a dry run touches nothing


def test_an_invalid_file_is_an_error_entry_and_the_valid_scenarios_still_run(db: Database, tmp_path: Path):
    good = scenario(tmp_path, "good", "simulate_img_gen: true\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nvariants: lots\n")
    report = tmp_path / "report.json"
    result = invoke("run", good, str(bad), "--database-url", url(db), "--reference-pipeline", "--json", str(report))
    assert result.exit_code == 2
    assert f"  {bad}:2:11: $.variants: expected a whole number, got a string ('lots')" in result.stdout.splitlines()
    assert result.stdout.strip().splitlines()[-1].startswith("2 scenarios: 1 passed, 0 failed, 1 errors (1 invalid file)")
    doc = json.loads(report.read_text())
    assert {s["name"]: s["outcome"] for s in doc["scenarios"]} == {"good": "passed", str(bad): "error"}


def test_a_lone_invalid_file_is_one_located_line_and_seeds_nothing(db: Database, tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nvariants: lots\n")
    with contextlib.closing(db.connect()) as conn:
        before = count(conn, "select count(*) from jobs")
    result = invoke("run", str(bad), "--database-url", url(db), "--reference-pipeline")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"{bad}:2:11: $.variants: expected a whole number, got a string ('lots')"
    with contextlib.closing(db.connect()) as conn:
        assert count(conn, "select count(*) from jobs") == before


def test_unreachable_database_exits_three_and_the_reports_say_why(tmp_path: Path):
    junit, report = tmp_path / "junit.xml", tmp_path / "report.json"
    result = invoke("run", scenario(tmp_path, "x", ""), "--database-url", "postgresql://qa:s3cret@127.0.0.1:1/x",
                    "--junit", str(junit), "--json", str(report))
    assert result.exit_code == 3
    assert "connection refused" in result.stderr and "s3cret" not in result.output
    JUNIT_XSD.validate(str(junit))
    error = JUNIT_XSD.to_dict(str(junit))["testsuite"][0]["testcase"][0]["error"][0]
    assert "connection refused" in error["@message"] and "s3cret" not in junit.read_text()
    doc = json.loads(report.read_text())
    resources.validator("report.schema.json").validate(doc)
    assert doc["exit_code"] == 3 and doc["scenarios"] == [] and "connection refused" in doc["error"]


def test_database_without_the_schema_exits_three(fresh_database, tmp_path: Path):
    empty = fresh_database()
    result = invoke("run", scenario(tmp_path, "x", ""), "--database-url", url(empty))
    assert result.exit_code == 3
    assert "the database lacks what ye-run seeds" in result.stdout + result.stderr
    assert "table jobs is missing" in result.stdout + result.stderr


def test_customer_tenant_is_refused_before_anything_is_seeded(db: Database, tmp_path: Path):
    path = tmp_path / "customer.yaml"
    path.write_text("name: customer\ntenant: {id: acme_corp}\n")
    result = invoke("run", str(path), "--database-url", url(db))
    assert result.exit_code == 2 and "refusing to write to tenant 'acme_corp'" in result.output


def _wait_for(stream, needle: str, timeout: float = 60) -> str:  # type: ignore[no-untyped-def]
    seen = ""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"never saw {needle!r}; got:\n{seen}"
        if select.select([stream], [], [], remaining)[0]:
            chunk = os.read(stream.fileno() if hasattr(stream, "fileno") else stream, 4096).decode(errors="replace")
            assert chunk, f"stream closed before {needle!r}; got:\n{seen}"
            seen += chunk
    return seen


def _process(db: Database, *args: str, ci: bool = True, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "YE_DATABASE_URL": url(db), "PYTHONPATH": str(ROOT)}
    env.pop("CI", None)
    if ci:
        env["CI"] = "true"
    return subprocess.Popen([sys.executable, "-m", "runner", *args], env=env, **kwargs)


@pytest.mark.parametrize("policy", ["never", "always"])
def test_sigint_stops_writes_a_partial_report_and_leaves_no_half_seeded_job(db: Database, tmp_path: Path,
                                                                            policy: str):
    path = scenario(tmp_path, "endless", f"cleanup: {policy}\nsimulate_img_gen: true\nvariants: 4\n"
                    "mode: {type: interval, jobs: 500, interval: 20ms, max_in_flight: 50}\n"
                    "reference_pipeline: {latency: {default: 30ms}}\n")
    report = tmp_path / "report.json"
    proc = _process(db, path, "--reference-pipeline", "-v", "--json", str(report), stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE)
    try:
        _wait_for(proc.stdout, "job 3 seeded")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err.decode()
    doc = json.loads(report.read_text())
    resources.validator("report.schema.json").validate(doc)
    (result,) = doc["scenarios"]
    assert doc["exit_code"] == 130 and result["outcome"] == "interrupted"
    assert any(job["outcome"] == "interrupted" for job in result["jobs"]) and len(result["jobs"]) < 500
    with contextlib.closing(db.connect()) as conn:
        tenant = result["run"]["record"]["tenant_id"]
        jobs = count(conn, "select count(*) from jobs where tenant_id = %s", (tenant,))
        if policy == "always":
            assert jobs == 0 and result["cleanup"]["applied"]
        else:
            assert jobs == len(result["jobs"])
            assert count(conn, "select count(*) from jobs j where tenant_id = %s and (select count(*) from "
                               "jobs_variants v where v.job_id = j.job_id) <> 4", (tenant,)) == 0
            assert count(conn, "select count(*) from jobs j where tenant_id = %s and not exists (select 1 from "
                               "job_inputs i where i.job_id = j.job_id)", (tenant,)) == 0


def test_terminal_shows_live_progress(db: Database, tmp_path: Path):
    path = scenario(tmp_path, "progress", "simulate_img_gen: true\nreference_pipeline: {latency: {default: 80ms}}\n")
    leader, follower = pty.openpty()
    env_proc = _process(db, path, "--reference-pipeline", ci=False, stdout=follower, stderr=follower)
    os.close(follower)
    try:
        output = _wait_for(leader, "progress: PASSED", timeout=60)
    finally:
        env_proc.wait(timeout=60)
        os.close(leader)
    assert env_proc.returncode == 0
    assert "\x1b[" in output and "progress job 1 [" in output and "#" in output


def test_shortcut_runs_a_scenario_file(db: Database, tmp_path: Path):
    path = scenario(tmp_path, "short", "simulate_img_gen: true\n")
    proc = _process(db, "-q", path, "--reference-pipeline", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert re.fullmatch(rb"1 scenarios: 1 passed, 0 failed, 0 errors, 0 not run in \S+\n", out)


def test_a_second_signal_cuts_a_blocked_cleanup_short_and_still_writes_the_reports(db: Database, tmp_path: Path):
    """Another session holds the job rows; cleanup waits for them; the second Ctrl+C skips it, at once."""
    path = scenario(tmp_path, "blocked", "cleanup: always\nsimulate_img_gen: true\n"
                                         "reference_pipeline: {latency: {default: 100ms}}\n")
    report, junit_path = tmp_path / "report.json", tmp_path / "junit.xml"
    proc = _process(db, path, "--reference-pipeline", "-v", "--json", str(report), "--junit", str(junit_path),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with contextlib.closing(db.connect()) as holder:
        try:
            seen = _wait_for(proc.stdout, "job 1 seeded")
            tenant = re.search(r"\(tenant (\S+)\)", seen).group(1)
            with holder.cursor() as cur:  # KEY SHARE: the pipeline may update the job; cleanup's FOR UPDATE waits
                cur.execute("SELECT 1 FROM jobs WHERE tenant_id = %s FOR KEY SHARE", (tenant,))
            _wait_for(proc.stdout, "job 1 PASSED")
            proc.send_signal(signal.SIGINT)
            _wait_for(proc.stderr, "SIGINT: stopping")  # the first one is handled; then the second
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
            holder.rollback()
    assert proc.returncode == 130, err.decode()
    # cut short by the signal, not ended by the 10 s lock timeout (that would be a lock error, not this): said in
    # the report below, so the test does not time it (it failed under load when it did)
    assert b"again: skipping what is left of cleanup" in err
    doc = json.loads(report.read_text())
    (result,) = doc["scenarios"]
    # the verdict may have been in before the first signal (then it stands) or not; the cleanup was cut short
    assert doc["exit_code"] == 130 and result["outcome"] in ("interrupted", "passed")
    assert not result["cleanup"]["applied"] and "cleanup skipped (second signal)" in result["cleanup"]["error"]
    JUNIT_XSD.validate(str(junit_path))
    with contextlib.closing(db.connect()) as conn:
        assert count(conn, "select count(*) from jobs where tenant_id = %s", (tenant,)) == 1


def test_sighup_stops_a_run_like_sigterm(db: Database, tmp_path: Path):
    path = scenario(tmp_path, "hangup", "cleanup: always\nsimulate_img_gen: true\n"
                                        "mode: {type: interval, jobs: 100, interval: 50ms, max_in_flight: 5}\n"
                                        "reference_pipeline: {latency: {default: 20ms}}\n")
    report = tmp_path / "report.json"
    proc = _process(db, path, "--reference-pipeline", "-v", "--json", str(report), stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE)
    try:
        _wait_for(proc.stdout, "job 2 seeded")
        proc.send_signal(signal.SIGHUP)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err.decode()
    assert b"SIGHUP: stopping" in err
    doc = json.loads(report.read_text())
    assert doc["exit_code"] == 130 and doc["scenarios"][0]["outcome"] == "interrupted"
    assert doc["scenarios"][0]["cleanup"]["applied"]


def test_a_report_that_cannot_be_written_is_refused_before_anything_runs(tmp_path: Path):
    """Found now, not after the run has seeded and cleaned up (it used to print 'cannot write' after the total)."""
    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: s\n")
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    cases = [(["--junit", str(blocked / "r.xml")], f"--junit {blocked / 'r.xml'}: cannot write there"),
             (["--junit", str(tmp_path / "r.xml"), "--json", str(tmp_path / "r.xml")],
              "--junit and --json name the same file")]
    for args, said in cases:
        result = invoke("run", str(scenario), *args, "--dry-run")
        assert result.exit_code == 2, result.output
        assert said in result.stderr
    assert not (tmp_path / "r.xml").exists()
    made = invoke("run", str(scenario), "--json", str(tmp_path / "new" / "dir" / "r.json"), "--dry-run")
    assert made.exit_code == 0, made.output  # a folder not there yet is made when the report is written

"""Suites: parallel scenarios with the verdicts of serial ones, selection, list, fail-fast, CI-grade reports."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
from pathlib import Path

from runner import resources
from runner.db.connect import Database
from tests.cli.test_run_cli import JUNIT_XSD, ROOT, _process, _wait_for, invoke, url
from tests.db.helpers import count

FAULTS = {
    "skip-two": "reference_pipeline: {faults: [{kind: skip, step: yolo_detect, variants: [2]}]}\n",
    "fail-one": "reference_pipeline: {faults: [{kind: fail, step: ocr_eval, variants: [1]}]}\n",
    "declared": ("expect: {failures: [{step: ocr_eval, variants: [3]}]}\n"
                 "reference_pipeline: {faults: [{kind: fail, step: ocr_eval, variants: [3]}]}\n"),
    "healthy": "reference_pipeline: {latency: {default: 5ms}}\n",
}


def write_suite(tmp_path: Path, texts: dict[str, str], tenant: str = "ye_suite_test") -> Path:
    folder = tmp_path / "suite"
    folder.mkdir(exist_ok=True)
    for name, text in texts.items():
        (folder / f"{name}.yaml").write_text(f"name: {name}\ntags: [{name.split('-')[0]}]\n"
                                             f"tenant: {{id: {tenant}}}\nsimulate_img_gen: true\n"
                                             "timeouts: {step: 20s, stall: 20s, job: 60s}\n" + text)
    return folder


def verdicts(report: Path) -> dict[str, tuple[str, list[str]]]:
    doc = json.loads(report.read_text())
    resources.validator("report.schema.json").validate(doc)
    return {s["name"]: (s["outcome"], sorted({f["kind"] for j in s["jobs"] for f in j["failures"]}))
            for s in doc["scenarios"]}


def test_parallel_verdicts_equal_serial_ones_for_faults_side_by_side(db: Database, tmp_path: Path):
    """Four scenarios on one tenant, faults injected into their own jobs only: -j 4 says what -j 1 says."""
    suite = write_suite(tmp_path, FAULTS)
    serial, parallel = tmp_path / "serial.json", tmp_path / "parallel.json"
    first = invoke("run", str(suite), "--database-url", url(db), "--reference-pipeline", "--json", str(serial))
    second = invoke("run", str(suite), "-j", "4", "--database-url", url(db), "--reference-pipeline",
                    "--json", str(parallel))
    assert first.exit_code == second.exit_code == 1, second.output
    assert verdicts(serial) == verdicts(parallel) == {
        "declared": ("passed", []), "fail-one": ("failed", ["unexpected_failure"]), "healthy": ("passed", []),
        "skip-two": ("failed", ["skipped_step"])}
    workers = {s["name"]: s for s in json.loads(parallel.read_text())["scenarios"]}
    assert second.stdout.rstrip().splitlines()[-1].startswith("4 scenarios: 2 passed, 2 failed, 0 errors, 0 not run in ")
    assert len({w["jobs"][0]["tenant_id"] for w in workers.values()}) == 1  # one tenant, rows kept apart by run


def test_the_shipped_suite_has_the_same_verdicts_at_any_parallelism(db: Database, tmp_path: Path):
    serial, parallel = tmp_path / "serial.json", tmp_path / "parallel.json"
    scenarios = str(ROOT / "scenarios")
    first = invoke("run", scenarios, "--database-url", url(db), "--reference-pipeline", "--json", str(serial),
                   "--asset-dir", str(tmp_path / "assets"))
    second = invoke("run", scenarios, "-j", "4", "--database-url", url(db), "--reference-pipeline",
                    "--json", str(parallel), "--asset-dir", str(tmp_path / "assets"))
    assert first.exit_code == second.exit_code == 0, second.output
    assert verdicts(serial) == verdicts(parallel)
    assert all(outcome == "passed" for outcome, _ in verdicts(parallel).values())


def test_list_shows_the_selection_and_validates_every_file(tmp_path: Path):
    suite = write_suite(tmp_path, FAULTS)
    listed = invoke("list", str(suite), "--tag", "fail", "--tag", "skip", "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)["scenarios"]
    assert [r["name"] for r in rows] == ["fail-one", "skip-two"]
    assert rows[0] == {**rows[0], "jobs": 1, "variants": 3, "mode": "once", "longest": 60.0, "tags": ["fail"]}
    table = invoke("list", str(suite), "-k", "not healthy")
    assert table.exit_code == 0 and "healthy" not in table.stdout and "skip-two" in table.stdout
    (suite / "broken.yaml").write_text("name: broken\nvariants: lots\ntags: [other]\n")
    refused = invoke("list", str(suite), "--tag", "fail")
    assert refused.exit_code == 2 and "broken.yaml:2:11: $.variants" in refused.stderr


def test_fail_fast_starts_nothing_after_a_failure_and_reports_the_rest_as_not_run(db: Database, tmp_path: Path):
    suite = write_suite(tmp_path, {"a-fails": FAULTS["fail-one"], "b-healthy": FAULTS["healthy"],
                                   "c-healthy": FAULTS["healthy"]})
    junit = tmp_path / "junit.xml"
    result = invoke("run", str(suite), "--fail-fast", "--database-url", url(db), "--reference-pipeline",
                    "--junit", str(junit))
    assert result.exit_code == 1, result.output
    assert "b-healthy: NOT RUN - not run: --fail-fast stopped the suite after a failure" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("3 scenarios: 0 passed, 1 failed, 0 errors, 2 not run")
    JUNIT_XSD.validate(str(junit))
    suites = {s["@name"]: s for s in JUNIT_XSD.to_dict(str(junit))["testsuite"]}
    assert suites["c-healthy"]["@skipped"] == 1 and suites["a-fails"]["@failures"] == 1


def test_junit_names_are_stable_across_runs(db: Database, tmp_path: Path):
    suite = write_suite(tmp_path, {"skip-two": FAULTS["skip-two"], "healthy": FAULTS["healthy"]})
    names, ids = [], []
    for night in ("one", "two"):
        junit = tmp_path / f"{night}.xml"
        invoke("run", str(suite), "-j", "2", "--database-url", url(db), "--reference-pipeline", "--junit", str(junit))
        JUNIT_XSD.validate(str(junit))
        doc = JUNIT_XSD.to_dict(str(junit))
        names.append(sorted((s["@name"], c["@classname"], c["@name"]) for s in doc["testsuite"]
                            for c in s["testcase"]))
        ids.append(sorted(p["@value"] for s in doc["testsuite"] for p in s["properties"]["property"]
                          if p["@name"] == "job 1.job_id"))
    # the "scenario checks" testcase is there every night, failed or not: the set of testcases never depends on
    # what failed, so a CI's history of each testcase holds across nights
    assert names[0] == names[1] == [("healthy", "ye-run.healthy", "job 1"), ("healthy", "ye-run.healthy", "scenario checks"),
                                    ("skip-two", "ye-run.skip-two", "job 1"),
                                    ("skip-two", "ye-run.skip-two", "scenario checks")]
    assert ids[0] and ids[1] and set(ids[0]).isdisjoint(ids[1])


def test_an_invalid_file_is_an_error_entry_in_every_report_and_the_night_goes_on(db: Database, tmp_path: Path):
    from runner.report import html

    suite = write_suite(tmp_path, {"healthy": FAULTS["healthy"]})
    broken = suite / "broken.yaml"
    broken.write_text("name: broken\nvariants: lots\n")
    junit, report, page = tmp_path / "junit.xml", tmp_path / "report.json", tmp_path / "report.html"
    result = invoke("run", str(suite), "--database-url", url(db), "--reference-pipeline", "--junit", str(junit),
                    "--json", str(report), "--html", str(page))
    assert result.exit_code == 2, result.output
    assert result.stdout.strip().splitlines()[-1].startswith("2 scenarios: 1 passed, 0 failed, 1 errors (1 invalid")
    JUNIT_XSD.validate(str(junit))
    cases = {(s["@name"], c["@name"]): c for s in JUNIT_XSD.to_dict(str(junit))["testsuite"] for c in s["testcase"]}
    (broken_case,) = [c for (suite_name, _), c in cases.items() if suite_name.endswith("broken.yaml")]
    assert "$.variants" in broken_case["error"][0]["@message"]
    assert "failure" not in cases[("healthy", "job 1")] and "error" not in cases[("healthy", "job 1")]
    doc = json.loads(report.read_text())
    resources.validator("report.schema.json").validate(doc)
    by_name = {s["name"]: s for s in doc["scenarios"]}
    assert doc["exit_code"] == 2 and by_name["healthy"]["outcome"] == "passed"
    assert by_name[str(broken)]["outcome"] == "error" and "broken.yaml:2:11: $.variants" in by_name[str(broken)]["error"]
    text = page.read_text()
    assert "broken.yaml:2:11: $.variants" in text and html.render(doc) == text


def test_a_report_that_cannot_be_written_is_one_error_and_the_others_still_land(db: Database, tmp_path: Path):
    """Writable when the run started (that is checked first), not when it ended (here its folder became a file):
    one error line, exit 2, and the other reports still land."""
    slow = "mode: {type: interval, jobs: 4, interval: 300ms}\nreference_pipeline: {latency: {default: 5ms}}\n"
    suite = write_suite(tmp_path, {"healthy": slow})
    later = tmp_path / "later"
    later.mkdir()
    junit = tmp_path / "junit.xml"
    proc = _process(db, "run", str(suite), "--reference-pipeline", "-v", "--json", str(later / "report.json"),
                    "--junit", str(junit), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(proc.stdout, "job 1 seeded")
        later.rmdir()
        later.write_text("")
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    output = (out + err).decode()
    assert proc.returncode == 2, output
    assert "cannot write" in output and "report.json" in output
    assert "Traceback" not in output
    JUNIT_XSD.validate(str(junit))
    cases = [c for s in JUNIT_XSD.to_dict(str(junit))["testsuite"] for c in s["testcase"]]
    assert len(cases) == 5 and all("failure" not in case and "error" not in case for case in cases)  # 4 jobs + checks


def test_a_report_that_cannot_be_written_is_refused_before_anything_is_seeded(db: Database, tmp_path: Path):
    suite = write_suite(tmp_path, {"healthy": FAULTS["healthy"]}, tenant="ye_suite_unwritable_test")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    result = invoke("run", str(suite), "--database-url", url(db), "--reference-pipeline",
                    "--json", str(blocker / "report.json"), "--junit", str(tmp_path / "junit.xml"))
    assert result.exit_code == 2, result.output
    assert "--json" in result.stderr and "cannot write there" in result.stderr
    assert not (tmp_path / "junit.xml").exists()
    with contextlib.closing(db.connect()) as conn:
        assert count(conn, "select count(*) from jobs where tenant_id like %s", ("ye_suite_unwritable_test%",)) == 0


def test_ctrl_c_with_four_workers_stops_cleanly(db: Database, tmp_path: Path):
    slow = ("mode: {type: interval, jobs: 200, interval: 50ms, max_in_flight: 10}\n"
            "reference_pipeline: {latency: {default: 30ms}}\ncleanup: never\n")
    suite = write_suite(tmp_path, {f"slow-{i}": slow for i in range(6)}, tenant="ye_suite_sigint_test")
    report = tmp_path / "report.json"
    proc = _process(db, "run", str(suite), "-j", "4", "--reference-pipeline", "-v", "--json", str(report),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(proc.stdout, "job 3 seeded")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 130, err.decode()
    doc = json.loads(report.read_text())
    resources.validator("report.schema.json").validate(doc)
    outcomes = [s["outcome"] for s in doc["scenarios"]]
    assert doc["exit_code"] == 130 and "passed" not in outcomes
    assert outcomes.count("interrupted") >= 1 and set(outcomes) <= {"interrupted", "not_run"}
    assert doc["totals"]["scenarios"] == 6
    with contextlib.closing(db.connect()) as conn:
        for s in doc["scenarios"]:
            if s["run"]["record"] is None:
                continue
            tenant = s["run"]["record"]["tenant_id"]
            assert count(conn, "select count(*) from jobs j where tenant_id = %s and (select count(*) from "
                               "jobs_variants v where v.job_id = j.job_id) <> 3", (tenant,)) == 0


LITERAL_ROW = "fixtures: [{table: tone_styles, rows: [{tone_style_id: ye_suite_tone, name: calm}]}]\n"


def test_a_lone_invalid_file_reaches_the_html_report_too(tmp_path: Path):
    """With no valid file, the load problems are the session's first event: the page says ERROR with the located
    line, as the JSON report does, and the console adds nothing to the one line on stderr."""
    from runner.report import html

    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\nvariants: lots\n")
    page, report = tmp_path / "report.html", tmp_path / "report.json"
    result = invoke("run", str(broken), "--database-url", "postgresql://nobody@127.0.0.1:1/x", "--html", str(page),
                    "--json", str(report))
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip() == f"{broken}:2:11: $.variants: expected a whole number, got a string ('lots')"
    text = page.read_text()
    assert 'id="verdict">ERROR<' in text and "broken.yaml:2:11: $.variants" in text
    assert html.render(json.loads(report.read_text())) == text


def test_scenarios_that_would_seed_the_same_literal_row_side_by_side_are_refused_before_a_database_opens(
        tmp_path: Path):
    """Isolation is a selection check: -j 2 is refused (exit 2, in every report) even with no database to reach."""
    suite = write_suite(tmp_path, {"first": LITERAL_ROW, "second": LITERAL_ROW})
    junit, report = tmp_path / "junit.xml", tmp_path / "report.json"
    result = invoke("run", str(suite), "-j", "2", "--database-url", "postgresql://nobody@127.0.0.1:1/x",
                    "--junit", str(junit), "--json", str(report))
    assert result.exit_code == 2, result.output
    assert "a tone_styles row with no ${...} placeholder is also seeded by scenario 'first'" in result.stderr
    assert "connection refused" not in result.output
    doc = json.loads(report.read_text())
    resources.validator("report.schema.json").validate(doc)
    assert doc["exit_code"] == 2 and "also seeded by scenario 'first'" in doc["error"]
    JUNIT_XSD.validate(str(junit))
    assert "also seeded by scenario" in junit.read_text()
    serial = invoke("run", str(suite), "--database-url", "postgresql://nobody@127.0.0.1:1/x")
    assert serial.exit_code == 3 and "connection refused" in serial.stderr  # one at a time: nothing to refuse

"""The pytest plugin, through pytester as pytest's own plugins are tested: opt-in collection, markers,
located errors, the CLI's failure text, fixtures, xdist and JUnit names."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import psycopg2.sql  # noqa: F401  (imported before pytester's in-process runs: psycopg2's C code keeps its classes)
import pytest

import runner.engine.session  # noqa: F401  (the same: loaded once, in this process)
from runner.db.connect import Database

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

HEALTHY = ("name: {name}\ntags: [{tag}]\ntenant: {{id: ye_plugin_test, isolate: true}}\nsimulate_img_gen: true\n"
           "timeouts: {{step: 20s, stall: 20s, job: 60s}}\n")
SKIPS = HEALTHY + "reference_pipeline: {{faults: [{{kind: skip, step: yolo_detect, variants: [2]}}]}}\n"


def url(db: Database) -> str:
    return db.url.render_as_string(hide_password=False)


def scenarios(pytester: pytest.Pytester, **files: str) -> None:
    pytester.makeini("[pytest]\nye_run_paths = scenarios\n")
    folder = pytester.mkdir("scenarios")
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text, encoding="utf-8")


def test_other_yaml_is_never_collected(pytester: pytest.Pytester):
    pytester.makefile(".yml", **{"docker-compose": "services: {db: {image: postgres}}\n",
                                 ".gitlab-ci": "test: {script: [make]}\n"})
    pytester.makefile(".yaml", deployment="apiVersion: apps/v1\nkind: Deployment\n",
                      looks_like_a_scenario="name: smoke\nsimulate_img_gen: true\n")
    result = pytester.runpytest("--collect-only", "-q")
    assert "no tests collected" in result.stdout.str()
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_opted_in_scenarios_are_items_named_by_their_scenario_with_tag_markers(pytester: pytest.Pytester):
    scenarios(pytester, first=HEALTHY.format(name="first-one", tag="smoke"),
              second=HEALTHY.format(name="second-one", tag="nightly"))
    pytester.makefile(".yml", **{"docker-compose": "services: {}\n"})
    collected = pytester.runpytest("--collect-only", "-q", "--strict-markers")
    collected.stdout.fnmatch_lines(["scenarios/first.yaml::first-one", "scenarios/second.yaml::second-one",
                                    "2 tests collected*"])
    smoke = pytester.runpytest("--collect-only", "-q", "-m", "smoke", "--strict-markers")
    smoke.stdout.fnmatch_lines(["scenarios/first.yaml::first-one", "1/2 tests collected (1 deselected)*"])
    keyword = pytester.runpytest("--collect-only", "-q", "-k", "second")
    keyword.stdout.fnmatch_lines(["scenarios/second.yaml::second-one"])
    flag = pytester.runpytest("--collect-only", "-q", "--ye-run", "-c", "/dev/null", "scenarios/first.yaml")
    flag.stdout.fnmatch_lines(["*first.yaml::first-one"])


def test_an_invalid_scenario_is_a_collection_error_with_located_messages(pytester: pytest.Pytester):
    scenarios(pytester, broken="name: broken\nvariants: lots\nexpect: {steps: [vlm_analyse]}\n")
    result = pytester.runpytest("-q")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    assert "scenarios/broken.yaml:2:11: $.variants: expected a whole number, got a string ('lots')" in out
    assert "scenarios/broken.yaml:3:18: $.expect.steps[0]: unknown step 'vlm_analyse'; did you mean " \
           "'vlm_analyze'?" in out
    assert "Traceback" not in result.stdout.str()


def test_two_scenarios_of_one_name_are_a_collection_error_naming_both(pytester: pytest.Pytester):
    scenarios(pytester, first=HEALTHY.format(name="same", tag="smoke"), second=HEALTHY.format(name="same", tag="x"),
              third=HEALTHY.format(name="third", tag="x"))
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    assert ("scenarios/second.yaml:1:7: $.name: scenario name 'same' is also the name of "
            f"{pytester.path}/scenarios/first.yaml:1:7; names must be unique in a selection") in out.replace("\n", "")
    assert "ERROR scenarios/second.yaml" in out and "ERROR scenarios/first.yaml" not in out
    assert "Traceback" not in out


def test_a_failed_scenario_shows_the_clis_text_at_its_expectation(pytester: pytest.Pytester, db: Database):
    scenarios(pytester, skips=SKIPS.format(name="skips", tag="smoke"), fine=HEALTHY.format(name="fine", tag="ok"))
    result = pytester.runpytest("-q", "--ye-run-database-url", url(db), "--ye-run-reference-pipeline",
                                "--junitxml", "junit.xml")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "FAIL skips › job 1 (" in out and "yolo_detect: skipped yolo_detect (went from vlm_analyze straight " \
                                             "to planner)" in out
    assert "expected (-) vs observed (+):" in out and "time at yolo_detect:" in out
    assert "scenarios/skips.yaml:1: FAIL skips" in out  # the steps are the defaults: pointed at the name
    cases = {c.get("name"): c for c in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")}
    assert set(cases) == {"skips", "fine"} and cases["skips"].get("classname") == "scenarios.skips.yaml"
    assert cases["skips"].find("failure") is not None and cases["fine"].find("failure") is None
    reason = "job 1 › variant #2 › yolo_detect: skipped yolo_detect (went from vlm_analyze straight to planner)"
    assert cases["skips"].find("failure").get("message").startswith(reason)  # no ids: it groups across nights
    result.stdout.fnmatch_lines(["FAILED scenarios/skips.yaml::skips - job 1 › variant #2 › yolo_detect: skip*"])


def test_a_failure_is_reported_at_the_line_of_the_expectation_it_broke(pytester: pytest.Pytester, db: Database):
    steps = ("expect:\n  steps: [img_gen, vlm_analyze, yolo_detect, planner, overlay, vlm_judge, ocr_eval, "
             "readability_eval, iou_eval]\n")
    scenarios(pytester, placed=SKIPS.format(name="placed", tag="x") + steps)
    result = pytester.runpytest("-q", "--ye-run-database-url", url(db), "--ye-run-reference-pipeline")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "scenarios/placed.yaml:8: FAIL placed" in out
    assert "placed.yaml:8:10: $.expect.steps)" in out

MISSPELT_TABLE = HEALTHY + ("expect: {{sql: [{{name: variants, query: 'select count(*) from jobs_variant where "
                            "job_id = :job_id', equals: 3}}]}}\n")
REFUSE_DELETE = """
create function refuse_delete() returns trigger language plpgsql as
  $$ begin raise exception 'deletes are refused here'; end $$;
create trigger refuse_delete before delete on jobs for each row execute function refuse_delete();
"""


def test_what_stops_a_scenario_being_judged_is_an_error_not_a_failure(pytester: pytest.Pytester, db: Database,
                                                                       monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("COLUMNS", "200")
    scenarios(pytester, misspelt=MISSPELT_TABLE.format(name="misspelt", tag="x"),
              fine=HEALTHY.format(name="fine", tag="x"))
    args = ["--ye-run-database-url", url(db), "--ye-run-reference-pipeline", "--junitxml", "junit.xml"]
    result = pytester.runpytest("-q", *args)
    result.assert_outcomes(passed=1, errors=1)
    out = result.stdout.str()
    assert "ERROR at setup of ye-run scenario: misspelt" in out
    refused = "scenarios/misspelt.yaml:6:62: $.expect.sql[0].query: sql check 'variants': relation"
    assert refused in out
    assert "Traceback" not in out
    reason = "$.expect.sql[0].query: sql check 'variants': relation \"jobs_variant\" does not exist"
    result.stdout.fnmatch_lines([f"ERROR scenarios/misspelt.yaml::misspelt - {reason}"])  # the file is the node's
    cases = {c.get("name"): c for c in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")}
    assert cases["misspelt"].find("error") is not None and cases["misspelt"].find("failure") is None
    assert cases["misspelt"].find("error").get("message") == f'failed on setup with "{reason}"'  # no path in it
    guarded = pytester.runpytest("-q", *args, "--ye-run-tenant-pattern", "^only_this_tenant$")
    guarded.assert_outcomes(errors=2)
    assert "tenant" in guarded.stdout.str()


def test_a_scenario_whose_cleanup_fails_is_an_error(pytester: pytest.Pytester, database_with):
    database = database_with(REFUSE_DELETE)
    scenarios(pytester, cleaned=HEALTHY.format(name="cleaned", tag="x"))
    result = pytester.runpytest("-q", "--ye-run-database-url", url(database), "--ye-run-reference-pipeline")
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors") == 1 and "failed" not in outcomes, outcomes
    out = result.stdout.str()
    assert "ERROR at " in out and "deletes are refused here" in out and "Traceback" not in out
    result.stdout.fnmatch_lines(["ERROR scenarios/cleaned.yaml::cleaned - cleanup: *"])


def test_fixtures_run_scenarios_from_python_and_return_the_result(pytester: pytest.Pytester, db: Database):
    pytester.makepyfile(test_with_fixtures='''
        def test_variant_traces(ye_run_scenario, ye_run_database):
            assert ye_run_database.url is not None
            result = ye_run_scenario({"name": "py", "tenant": {"id": "ye_fixture_test", "isolate": True},
                                      "simulate_img_gen": True}, variants=2)
            (job,) = result.jobs
            assert len(job.variants) == 2 and result.outcome == "passed"
            trace = next(iter(job.variants.values())).transitions
            assert trace[-1].state == ("iou_eval", "done")
            assert result.latency["planner"].n == 2
            assert [t for t, _ in job.seeded.rows][:2] == ["jobs", "image_assets"]

        def test_yaml_text_and_a_failing_expectation(ye_run_scenario):
            result = ye_run_scenario("name: txt\\ntenant: {id: ye_fixture_test, isolate: true}\\n"
                                     "simulate_img_gen: true\\nexpect: {retries: {overlay: {min: 1}}}\\n")
            assert {f.kind for f in result.all_failures} == {"retries_below_minimum"}
            assert result.outcome == "passed", result  # fails on purpose: the message is the short repr
    ''')
    result = pytester.runpytest("-q", "--ye-run-database-url", url(db), "--ye-run-reference-pipeline")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["E *AssertionError: <ScenarioResult 'txt' failed, 1 job(s): job 1*: *overlay*>"])
    assert "job_id" not in result.stdout.str()  # the short repr, not the dataclass's every field


def test_xdist_runs_scenarios_on_two_workers_with_the_serial_verdicts(pytester: pytest.Pytester, db: Database):
    scenarios(pytester, **{f"s{i}": HEALTHY.format(name=f"s{i}", tag="x") for i in range(3)},
              bad=SKIPS.format(name="bad", tag="x"))
    args = ["--ye-run-database-url", url(db), "--ye-run-reference-pipeline", "-p", "no:cacheprovider"]
    serial = pytester.runpytest_subprocess(*args)
    parallel = pytester.runpytest_subprocess("-n", "2", *args)
    serial.assert_outcomes(passed=3, failed=1)
    parallel.assert_outcomes(passed=3, failed=1)
    assert "[gw0]" in parallel.stdout.str() or "2 workers" in parallel.stdout.str()


def test_a_reference_pipeline_scenario_is_skipped_with_the_reason_against_a_real_pipeline(
        pytester: pytest.Pytester, db: Database):
    scenarios(pytester, skips=SKIPS.format(name="skips", tag="regression"))
    result = pytester.runpytest("-q", "-rs", f"--ye-run-database-url={url(db)}", "--ye-run-no-reference-pipeline")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*not run: it injects faults into the reference pipeline (skip); run it with "
                                 "--reference-pipeline*"])


def test_a_scenario_the_connection_budget_cannot_hold_is_an_error_as_in_the_cli(pytester: pytest.Pytester,
                                                                                  db: Database):
    """Items run through the CLI's session: its connection budget refuses, before anything is seeded, a scenario
    that could never fit on this server, with the CLI's words."""
    scenarios(pytester, wide=HEALTHY.format(name="wide", tag="x") + "reference_pipeline: {slots: 256}\n",
              fine=HEALTHY.format(name="fine", tag="x"))
    result = pytester.runpytest("-q", "--ye-run-database-url", url(db), "--ye-run-reference-pipeline")
    result.assert_outcomes(passed=1, errors=1)
    out = result.stdout.str()
    assert "ERROR at setup of ye-run scenario: wide" in out
    assert "scenario 'wide' needs 259 connections at once" in out and "Traceback" not in out


LITERAL_ROW = "fixtures: [{{table: tone_styles, rows: [{{tone_style_id: ye_plugin_tone, name: calm}}]}}]\n"


@pytest.mark.parametrize("target", ["external", "embedded"])
def test_xdist_workers_sharing_a_database_refuse_scenarios_that_would_seed_one_literal_row(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, target: str):
    """Every xdist worker selects the whole run's items, so each one finds the clash, before a database opens; one
    process alone runs them one at a time and refuses nothing. Workers share the embedded server as they share a
    given database, so the check holds there too. (Neither database can be reached: what the unrefused items meet
    is one located line each, the embedded server's reason every time it is asked, never a traceback.)"""
    scenarios(pytester, first=(HEALTHY + LITERAL_ROW).format(name="first", tag="x"),
              second=(HEALTHY + LITERAL_ROW).format(name="second", tag="x"))
    monkeypatch.setenv("COLUMNS", "200")
    args = ["-p", "no:cacheprovider"]
    if target == "external":
        args += ["--ye-run-database-url", "postgresql://nobody@127.0.0.1:1/x"]
        unreachable = "cannot reach PostgreSQL at 127.0.0.1:1: connection refused"
    else:  # a data directory no server starts in: PG_VERSION and nothing else
        monkeypatch.delenv("YE_DATABASE_URL", raising=False)
        broken = pytester.mkdir("pg")
        (broken / "PG_VERSION").write_text("18\n")
        monkeypatch.setenv("YE_EMBEDDED_DIR", str(broken))
        unreachable = f"cannot start the embedded PostgreSQL in {broken}"
    parallel = pytester.runpytest_subprocess("-n", "2", *args)
    parallel.assert_outcomes(errors=2)
    out = parallel.stdout.str()
    clash = "a tone_styles row with no ${...} placeholder is also seeded by scenario 'first'"
    assert clash in out and "ERROR at setup of ye-run scenario: second" in out
    assert out.count(unreachable) >= 1 and "Traceback" not in out
    serial = pytester.runpytest_subprocess(*args)
    serial.assert_outcomes(errors=2)
    assert clash not in serial.stdout.str()
    serial.stdout.fnmatch_lines([f"ERROR scenarios/first.yaml::first - {unreachable[:40]}*",
                                 f"ERROR scenarios/second.yaml::second - {unreachable[:40]}*"])
    assert "AssertionError" not in serial.stdout.str()  # a second try after a failed start: the same reason


LONG = ("name: long\ntenant: {id: ye_plugin_sigint_test}\nsimulate_img_gen: true\ncleanup: always\n"
        "mode: {type: interval, jobs: 5000, interval: 50ms, max_in_flight: 5}\n"
        "reference_pipeline: {latency: {default: 30ms}}\n")


def _await_notification(db: Database, tenant: str, timeout: float = 60) -> None:
    """Returns once the pipeline moves a variant of `tenant` (a job was seeded and is being worked on)."""
    import contextlib
    import json
    import select
    import time

    with contextlib.closing(db.connect("ye-run tests", autocommit=True)) as conn:
        conn.cursor().execute("LISTEN job_variant_state_changed")
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no variant of {tenant} moved"
            if select.select([conn], [], [], remaining)[0]:
                conn.poll()
                if any(json.loads(n.payload).get("tenant_id") == tenant for n in conn.notifies):
                    return
                conn.notifies.clear()


def test_ctrl_c_ends_the_scenario_under_way_like_the_cli_with_its_cleanup_applied(pytester: pytest.Pytester,
                                                                                   db: Database):
    """The item's session runs the scenario on a worker thread; Ctrl+C on pytest's thread stops it as SIGINT stops
    `ye-run run` (no new jobs, the verdict, the cleanup policy), then pytest ends as interrupted."""
    import signal
    import subprocess
    import sys

    from tests.db.helpers import count

    scenarios(pytester, long=LONG)
    proc = pytester.popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--ye-run-database-url",
                           url(db), "--ye-run-reference-pipeline"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        stdin=subprocess.DEVNULL)
    try:
        _await_notification(db, "ye_plugin_sigint_test")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=90)  # 5000 jobs, one each 50 ms: only a stopped run ends in time
    finally:
        proc.kill()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out.decode()
    assert b"KeyboardInterrupt" in out
    with db.connect("ye-run tests") as conn:
        assert count(conn, "select count(*) from jobs where tenant_id = 'ye_plugin_sigint_test'") == 0


SLO = ("name: planner-slo\ntenant: {id: ye_plugin_slo, isolate: true}\nsimulate_img_gen: true\n"
       "reference_pipeline: {latency: {steps: {planner: 300ms}}}\nexpect: {latency: {planner: {p95: 100ms}}}\n")
SERVER = '''
import os

def test_which_server(ye_run_database):
    with ye_run_database.connect("which server") as conn, conn.cursor() as cur:
        cur.execute("SELECT current_setting('data_directory'), pg_postmaster_start_time()::text")
        found = " ".join(cur.fetchone())
    (Path(os.environ["SERVERS"]) / os.environ["PYTEST_XDIST_WORKER"]).write_text(found)
'''


def test_xdist_workers_share_one_embedded_server_and_say_what_failed(pytester: pytest.Pytester, tmp_path,
                                                                       monkeypatch: pytest.MonkeyPatch):
    """`-n 2` on the embedded default: both workers join one server (the last to leave stops it), and a failed
    scenario's summary line, sent back from a worker, says what failed."""
    servers = tmp_path / "servers"
    servers.mkdir()
    monkeypatch.setenv("SERVERS", str(servers))
    monkeypatch.setenv("YE_EMBEDDED_DIR", str(tmp_path / "pg"))
    monkeypatch.delenv("YE_DATABASE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    scenarios(pytester, slo=SLO)
    pytester.makepyfile(test_server="from pathlib import Path\n" + SERVER)
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "each", "-rf", "-p", "no:cacheprovider",
                                           "--ye-run", "scenarios", "test_server.py")
    result.assert_outcomes(passed=2, failed=2)
    seen = {path.name: path.read_text() for path in servers.iterdir()}
    assert set(seen) == {"gw0", "gw1"} and len(set(seen.values())) == 1, seen
    assert seen["gw0"].startswith(str(tmp_path / "pg"))
    assert not (tmp_path / "pg" / "postmaster.pid").exists()  # the last worker to leave stopped it
    result.stdout.re_match_lines([r"FAILED scenarios/slo.yaml::planner-slo - planner: p95 latency \d+ms is over the "
                                 r"limit 100ms \(n=3\)"])


def test_a_result_shows_in_short_what_failed():
    from runner.engine.results import ScenarioResult
    from runner.trace import Failure

    result = ScenarioResult("planner-slo", "slo.yaml", "20261206T040603-6afee1")
    result.outcome = "failed"
    result.failures = [Failure("latency_limit", "planner-slo › planner: p95 latency 180ms is over the limit 100ms "
                                                "(n=3)"),
                       Failure("sql_check", "planner-slo › job 1 (5abccf5a-268e-447a-ae85-308fa87c267f): sql check "
                                            "'enough': expected >= 4, got 3")]
    assert repr(result) == ("<ScenarioResult 'planner-slo' failed, 0 job(s): planner: p95 latency 180ms is over the "
                            "limit 100ms (n=3); job 1: sql check 'enough': expected >= 4, got 3>")
    assert repr(ScenarioResult("fine", "fine.yaml", "r")) == "<ScenarioResult 'fine' running, 0 job(s)>"

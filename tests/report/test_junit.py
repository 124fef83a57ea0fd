"""The JUnit writer on hand-built results: stable names, ids in properties, every outcome, safe XML."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

import xmlschema

from runner.db.registry import SeededJob, SeededVariant
from runner.engine.results import JobResult, Outcome, ScenarioResult
from runner.report import junit
from runner.trace import Failure

HERE = Path(__file__).parent
XSD = xmlschema.XMLSchema(str(HERE / "junit.xsd"))
"""The shape the tests read a file with."""
CI_SCHEMAS = {name: xmlschema.XMLSchema(str(HERE / name)) for name in ("JUnit.xsd", "junit-10.xsd")}
"""What CI servers hold a file to: Ant's schema (the strictest in common use) and Jenkins' xUnit plugin's."""
NOW = datetime(2026, 11, 28, tzinfo=timezone.utc)


def job(ordinal: int, outcome: str, failures: list[Failure] | None = None) -> JobResult:
    seeded = SeededJob(ordinal, str(uuid.uuid4()), "ye_t_test", str(uuid.uuid4()),
                       (SeededVariant(str(uuid.uuid4()), 1),), ())
    result = JobResult(seeded, NOW, 0.0, {}, failures=failures or [])
    result.outcome, result.finished_mono = outcome, 1.5
    return result


def scenario(name: str, outcome: Outcome, jobs: list[JobResult], error: str | None = None) -> ScenarioResult:
    result = ScenarioResult(name, f"scenarios/{name}.yaml", f"20261128T000000-{uuid.uuid4().hex[:6]}",
                            jobs=jobs, outcome=outcome, error=error, started_at=NOW, duration=2.0)
    return result


def cases(path: Path) -> dict[tuple[str, str], dict]:
    for schema in (XSD, *CI_SCHEMAS.values()):
        schema.validate(str(path))
    doc = XSD.to_dict(str(path))
    return {(s["@name"], c["@name"]): c for s in doc["testsuite"] for c in s["testcase"]}


def test_names_are_stable_and_ids_are_properties(tmp_path: Path):
    failure = Failure("skipped_step", "s › job 1 › variant #2 › yolo_detect: skipped", "detail \x1b[31m")
    results = [scenario("s", Outcome.FAILED, [job(1, "failed", [failure]), job(2, "passed")]),
               scenario("t", Outcome.INTERRUPTED, [job(1, "interrupted")])]
    path = tmp_path / "junit.xml"
    junit.write(path, results)
    found = cases(path)
    assert set(found) == {("s", "job 1"), ("s", "job 2"), ("s", "scenario checks"), ("t", "job 1"),
                          ("t", "scenario checks")}
    first = found[("s", "job 1")]
    assert first["@classname"] == "ye-run.s" and first["failure"][0]["@type"] == "skipped_step"
    properties = suite_properties(path)["s"]
    assert properties["job 1.job_id"] == results[0].jobs[0].job_id and properties["run_id"] == results[0].run_id
    assert properties["job 2.tenant_id"] == "ye_t_test" and properties["file"] == "scenarios/s.yaml"
    assert "skipped" in found[("t", "job 1")]
    assert "\\x1b[31m" in path.read_text() and "\x1b" not in path.read_text()


def test_errors_not_run_and_invalid_files_are_testcases(tmp_path: Path):
    not_run = scenario("later", Outcome.NOT_RUN, [])
    not_run.note = "not run: --fail-fast stopped the suite after a failure"
    results = [scenario("broken", Outcome.ERROR, [], error="lost the database connection: gone"), not_run]
    path = tmp_path / "junit.xml"
    junit.write(path, results, "ye-run: bug", {"bad.yaml": ["bad.yaml:2:11: $.variants: expected a whole number"]})
    found = cases(path)
    assert found[("broken", "scenario checks")]["error"][0]["@message"] == "lost the database connection: gone"
    assert found[("later", "scenario checks")]["skipped"][0]["@message"].startswith("not run: --fail-fast")
    assert found[("bad.yaml", "bad.yaml")]["error"][0]["@message"].startswith("bad.yaml:2:11: $.variants")
    assert found[("ye-run", "run")]["error"][0]["@message"] == "ye-run: bug"


def test_a_job_the_scenario_could_not_finish_is_an_error_never_a_pass(tmp_path: Path):
    results = [scenario("lost", Outcome.ERROR, [job(1, "passed"), job(2, "error")],
                        error="lost the database connection while reading the job's rows: gone")]
    path = tmp_path / "junit.xml"
    junit.write(path, results)
    found = cases(path)
    assert "error" not in found[("lost", "job 1")]
    assert found[("lost", "job 2")]["error"][0]["@message"] == (
        "did not finish: lost the database connection while reading the job's rows: gone")


def suite_properties(path: Path) -> dict[str, dict[str, str]]:
    return {s["@name"]: {p["@name"]: p["@value"] for p in (s["properties"] or {}).get("property", [])}
            for s in XSD.to_dict(str(path))["testsuite"]}


def test_every_outcome_is_valid_for_the_ci_servers_schemas(tmp_path: Path):
    failure = Failure("step_timeout", "s › job 2 › variant #1 › planner: timed out", "after 5s")
    not_run = scenario("later", Outcome.NOT_RUN, [])
    not_run.note = "not run: --fail-fast stopped the suite after a failure"
    seeded = scenario("seed-only", Outcome.SEEDED, [job(1, "seeded")])
    lost = scenario("lost", Outcome.ERROR, [job(1, "passed"), job(2, "error", [failure]), job(3, "running")],
                    error="lost the database connection: gone")
    lost.failures = [Failure("latency_limit", "lost › planner: p95 over its limit", "p95 2s > 1s")]
    stopped = scenario("stopped", Outcome.INTERRUPTED, [job(1, "interrupted")])
    stopped.started_at = None
    results = [scenario("fine", Outcome.PASSED, [job(1, "passed")]),
               scenario("s", Outcome.FAILED, [job(1, "failed", [failure])]), lost, stopped, seeded, not_run]
    path = tmp_path / "junit.xml"
    junit.write(path, results, "ye-run: bug", {"bad.yaml": ["bad.yaml:2:11: $.variants: expected a whole number"]})
    for name, schema in CI_SCHEMAS.items():
        assert schema.is_valid(str(path)), (name, next(schema.iter_errors(str(path))))
    found = cases(path)
    job_2 = found[("lost", "job 2")]
    assert set(job_2) & {"failure", "error", "skipped"} == {"error"}  # one outcome per testcase, the worst
    assert job_2["error"][0]["@message"] == "did not finish: lost the database connection: gone"
    assert "timed out" in job_2["error"][0]["$"]  # the failure is kept in its text
    checks = found[("lost", "scenario checks")]  # the error that ended it, its own failures in the text
    assert checks["error"][0]["@message"] == "lost the database connection: gone"
    assert "p95 over its limit" in checks["error"][0]["$"]
    assert "skipped" in found[("stopped", "job 1")] and "skipped" in found[("seed-only", "job 1")]
    assert "skipped" in found[("later", "scenario checks")]
    assert set(suite_properties(path)) == {"fine", "s", "lost", "stopped", "seed-only", "later", "bad.yaml", "ye-run"}
    assert suite_properties(path)["lost"]["job 3.job_id"] == lost.jobs[2].job_id


def test_the_testcases_of_a_scenario_do_not_depend_on_what_failed(tmp_path: Path):
    """Night one passes, night two fails a job and a latency limit: CI sees the same testcases both nights."""
    nights = []
    for night, failed in (("one", False), ("two", True)):
        failures = [Failure("skipped_step", "s › job 1 › variant #2 › yolo_detect: skipped")] if failed else []
        result = scenario("s", Outcome.FAILED if failed else Outcome.PASSED,
                          [job(1, "failed" if failed else "passed", failures), job(2, "passed")])
        result.failures = [Failure("latency_limit", "s › planner: p95 over its limit")] if failed else []
        path = tmp_path / f"{night}.xml"
        junit.write(path, [result])
        nights.append(set(cases(path)))
    assert nights[0] == nights[1] == {("s", "job 1"), ("s", "job 2"), ("s", "scenario checks")}


def test_failure_messages_carry_no_ids_which_go_to_properties_and_system_out(tmp_path: Path):
    """Two nights fail alike with other ids: the messages and texts are equal, so CI groups them; the ids are kept."""
    texts, outs = [], []
    for night in ("one", "two"):
        failed = job(1, "failed")
        variant = str(uuid.uuid4())
        failed.failures = [Failure("skipped_step", f"s › job 1 ({failed.job_id}) › variant #2 ({variant}) › "
                                                   "yolo_detect: skipped", f"row {variant} never wrote yolo_detect")]
        result = scenario("s", Outcome.ERROR, [failed], error=f"cleanup kept run {'20261128T000000-abc123'}")
        path = tmp_path / f"{night}.xml"
        junit.write(path, [result])
        found = cases(path)
        texts.append((found[("s", "job 1")]["failure"][0], found[("s", "scenario checks")]["error"][0]))
        outs.append(XSD.to_dict(str(path))["testsuite"][0]["system-out"])
        assert variant in outs[-1] and failed.job_id in outs[-1]
        assert suite_properties(path)["s"]["job 1.job_id"] == failed.job_id
    assert texts[0] == texts[1]
    failure, error = texts[0]
    assert failure["@message"] == "s › job 1 › variant #2 › yolo_detect: skipped"
    assert failure["$"] == "s › job 1 › variant #2 › yolo_detect: skipped\nrow <id> never wrote yolo_detect"
    assert error["@message"] == "cleanup kept run <id>"
    assert outs[0] != outs[1]


def test_the_description_and_a_flaky_scenarios_attempts_are_properties(tmp_path: Path):
    from runner.engine.results import Attempt

    result = scenario("s", Outcome.FLAKY, [job(1, "passed")])
    result.description = "the planner retries a failed overlay"
    result.attempts = [Attempt("20261128T000000-aaaaaa", Outcome.FAILED, 3.0, ("s › job 1: skipped planner",))]
    path = tmp_path / "junit.xml"
    junit.write(path, [result])
    properties = suite_properties(path)["s"]
    assert properties["description"] == "the planner retries a failed overlay"
    assert properties["outcome"] == "flaky"
    assert properties["attempt 1"] == "failed (run 20261128T000000-aaaaaa): s › job 1: skipped planner"
    assert all(set(case) & {"failure", "error", "skipped"} == set() for case in cases(path).values())

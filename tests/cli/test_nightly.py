"""The nightly suite end to end on real PostgreSQL: --last-failed, --reruns (flaky), --shard by past durations and
`ye-run report merge` of N CI machines' reports (docs/ci.md)."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner import resources
from runner.db.connect import Database
from tests.cli.test_run_cli import JUNIT_XSD, invoke, url
from tests.cli.test_suites import FAULTS

ALWAYS_FAILS = FAULTS["fail-one"]
HEALTHY = FAULTS["healthy"]
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def flaky(name: str) -> str:
    """A scenario that fails the first time and passes every time after: its SQL check reads the run registry,
    which holds a failed run of it only once its first attempt has failed. No clock, no sleep."""
    return (HEALTHY + "expect:\n  sql:\n    - name: an earlier attempt failed\n"
            f"      query: select count(*) from ye_run_runs where scenario = '{name}' and outcome = 'failed'\n"
            "      at_least: 1\n")


def write(folder: Path, texts: dict[str, str]) -> Path:
    """One file per scenario in `folder`, named after it; one tenant for all (rows are kept apart by run)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / f"{name}.yaml").write_text(f"name: {name}\ntenant: {{id: ye_nightly_test}}\n"
                                             "simulate_img_gen: true\ntimeouts: {step: 20s, stall: 20s, job: 60s}\n"
                                             + text)
    return folder


def run(database: Database, *args: str) -> Any:
    return invoke("run", *args, "--database-url", url(database), "--reference-pipeline")


def report(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    resources.validator("report.schema.json").validate(doc)
    return doc


def outcomes(path: Path) -> dict[str, str]:
    """Scenario name -> outcome, as a JSON report says it."""
    return {s["name"]: s["outcome"] for s in report(path)["scenarios"]}


def record_yesterday(database: Database, seconds: dict[str, float]) -> None:
    """Runs in the registry that finished before today (UTC), so --shard reads their durations."""
    with contextlib.closing(database.connect("ye-run tests")) as conn, conn.cursor() as cur:
        for number, (scenario, took) in enumerate(seconds.items()):
            cur.execute("INSERT INTO ye_run_runs (run_id, scenario, tenant_id, started_at, finished_at, outcome) "
                        "SELECT %s, %s, 'ye_nightly_test', day - interval '3 hours', "
                        "day - interval '3 hours' + make_interval(secs => %s), 'passed' "
                        "FROM (SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS day) today",
                        (f"yesterday-{number}", scenario, took))
        conn.commit()


# --- --last-failed ---------------------------------------------------------------------------------------------

def test_last_failed_reruns_exactly_last_nights_failures_from_a_report_or_the_registry(
        database_with: Callable[..., Database], tmp_path: Path):
    database = database_with()
    suite = write(tmp_path / "suite", {"healthy-a": HEALTHY, "healthy-b": HEALTHY, "fail-one": ALWAYS_FAILS,
                                       "skip-two": FAULTS["skip-two"]})
    night = tmp_path / "night.json"
    first = run(database, str(suite), "--json", str(night))
    assert first.exit_code == 1, first.output
    assert outcomes(night) == {"fail-one": "failed", "healthy-a": "passed", "healthy-b": "passed",
                               "skip-two": "failed"}

    from_report = tmp_path / "from-report.json"
    again = run(database, str(suite), "--last-failed-from", str(night), "--json", str(from_report))
    assert again.exit_code == 1, again.output
    assert outcomes(from_report) == {"fail-one": "failed", "skip-two": "failed"}
    assert "--last-failed: 2 of 4 selected scenario(s) failed in their last run (the report)" in again.stdout
    assert again.stdout.rstrip().splitlines()[-1].startswith("2 scenarios: 0 passed, 2 failed")

    # fixed tonight: the registry's last run of fail-one passes, so the next --last-failed leaves it out
    write(suite, {"fail-one": HEALTHY})
    from_registry = tmp_path / "from-registry.json"
    fixed = run(database, str(suite), "--last-failed", "--json", str(from_registry))
    assert fixed.exit_code == 1, fixed.output
    assert outcomes(from_registry) == {"fail-one": "passed", "skip-two": "failed"}
    assert "failed in their last run (the run registry)" in fixed.stdout
    still = run(database, str(suite), "--last-failed", "--json", str(from_registry))
    assert still.exit_code == 1, still.output
    assert outcomes(from_registry) == {"skip-two": "failed"}


def test_last_failed_with_nothing_failed_runs_nothing_and_passes(database_with: Callable[..., Database],
                                                                  tmp_path: Path):
    database = database_with()
    suite = write(tmp_path / "suite", {"healthy-a": HEALTHY})
    night = tmp_path / "night.json"
    assert run(database, str(suite), "--json", str(night)).exit_code == 0
    again = run(database, str(suite), "--last-failed-from", str(night), "--json", str(night))
    assert again.exit_code == 0, again.output
    assert "nothing to run" in again.stdout and outcomes(night) == {}
    assert again.stdout.rstrip().splitlines()[-1].startswith("0 scenarios: 0 passed, 0 failed")


# --- --reruns -----------------------------------------------------------------------------------------------

def test_a_scenario_passing_on_a_rerun_is_flaky_in_every_report_and_exits_zero(
        database_with: Callable[..., Database], tmp_path: Path):
    database = database_with()
    suite = write(tmp_path / "suite", {"flaky-once": flaky("flaky-once"), "healthy": HEALTHY})
    junit, night, page = tmp_path / "junit.xml", tmp_path / "night.json", tmp_path / "night.html"
    result = run(database, str(suite), "--reruns", "2", "--junit", str(junit), "--json", str(night),
                 "--html", str(page))
    assert result.exit_code == 0, result.output  # flaky is not a failure (docs/ci.md, `run --help`)
    assert "flaky-once: FLAKY - 1 job(s): 1 passed, 0 failed" in result.stdout
    assert "flaky-once: PASSED" not in result.stdout and "healthy: PASSED" in result.stdout
    assert "attempt 1 of 3 failed" in result.stdout  # said when it is run again, as a note, not as a verdict
    assert result.stdout.rstrip().splitlines()[-1].startswith("2 scenarios: 1 passed, 1 flaky, 0 failed, 0 errors")

    doc = report(night)
    scenarios = {s["name"]: s for s in doc["scenarios"]}
    assert doc["exit_code"] == 0 and doc["totals"]["flaky"] == 1 and doc["totals"]["passed"] == 1
    (earlier,) = scenarios["flaky-once"]["attempts"]
    assert scenarios["flaky-once"]["outcome"] == "flaky" and earlier["outcome"] == "failed"
    assert earlier["run_id"] != scenarios["flaky-once"]["run"]["run_id"]
    assert earlier["failures"] == ["job 1: sql check 'an earlier attempt failed': expected >= 1, got 0"]
    assert scenarios["healthy"]["attempts"] == []  # it passed first time: it ran once

    JUNIT_XSD.validate(str(junit))
    suites = {s["@name"]: s for s in JUNIT_XSD.to_dict(str(junit))["testsuite"]}
    properties = {p["@name"]: p["@value"] for p in suites["flaky-once"]["properties"]["property"]}
    assert properties["outcome"] == "flaky"
    assert properties["attempt 1"].startswith(f"failed (run {earlier['run_id']}): job 1: sql check")
    assert "FLAKY" in suites["flaky-once"]["system-out"]
    assert {p["@name"]: p["@value"] for p in suites["healthy"]["properties"]["property"]}["outcome"] == "passed"

    text = page.read_text()
    assert 'data-outcome="flaky" data-tags="" data-name="flaky-once"' in text
    assert "flaky: failed, then passed on a rerun" in text  # in the failure list at the top
    assert f"attempt 1 of 2 (run {earlier['run_id']}): failed" in text


def test_a_scenario_failing_every_attempt_stays_failed_with_its_attempts_listed(
        database_with: Callable[..., Database], tmp_path: Path):
    database = database_with()
    suite = write(tmp_path / "suite", {"always": ALWAYS_FAILS})
    junit, night, page = tmp_path / "junit.xml", tmp_path / "night.json", tmp_path / "night.html"
    result = run(database, str(suite), "--reruns", "2", "--junit", str(junit), "--json", str(night),
                 "--html", str(page))
    assert result.exit_code == 1, result.output
    assert "always: FAILED" in result.stdout
    assert "attempt 1 of 3 failed" in result.stdout and "attempt 2 of 3 failed" in result.stdout
    assert "  attempt 2 of 3 (run " in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("1 scenarios: 0 passed, 1 failed, 0 errors")

    (scenario,) = report(night)["scenarios"]
    assert scenario["outcome"] == "failed" and [a["outcome"] for a in scenario["attempts"]] == ["failed", "failed"]
    runs = {a["run_id"] for a in scenario["attempts"]} | {scenario["run"]["run_id"]}
    assert len(runs) == 3  # each attempt a run of its own
    assert all(not UUID.search(line) for a in scenario["attempts"] for line in a["failures"])

    JUNIT_XSD.validate(str(junit))
    (suite_xml,) = JUNIT_XSD.to_dict(str(junit))["testsuite"]
    properties = {p["@name"]: p["@value"] for p in suite_xml["properties"]["property"]}
    assert suite_xml["@failures"] == 1 and properties["outcome"] == "failed"
    assert {"attempt 1", "attempt 2"} <= set(properties)
    assert "attempt 2 of 3 (run " in page.read_text()


# --- --shard and report merge ---------------------------------------------------------------------------------

def shard_of(path: Path) -> dict[str, Any]:
    return report(path)["shard"]


def test_a_shard_is_balanced_by_past_durations_from_a_report_or_the_registry_else_by_count(
        database_with: Callable[..., Database], tmp_path: Path):
    database = database_with()
    names = ["h1", "h2", "h3", "h4"]
    suite = write(tmp_path / "suite", {name: HEALTHY for name in names})
    night = tmp_path / "night.json"
    assert run(database, str(suite), "--json", str(night)).exit_code == 0

    # tonight's runs are not past durations: every machine of one night reads the same, so this is by count
    by_count = tmp_path / "count.json"
    counted = run(database, str(suite), "--shard", "1/2", "--json", str(by_count))
    assert counted.exit_code == 0, counted.output
    assert shard_of(by_count) == {"index": 1, "count": 2, "balanced_by": "count", "selection": names}
    assert len(outcomes(by_count)) == 2 and "no past durations" in counted.stdout

    # from a JSON report: h3 took 100 times as long as each other, so it is a shard of its own
    doc = json.loads(night.read_text())
    for scenario in doc["scenarios"]:
        scenario["duration"] = 100.0 if scenario["name"] == "h3" else 1.0
    timed = tmp_path / "timed.json"
    timed.write_text(json.dumps(doc))
    parts = {}
    for k in (1, 2):
        part = tmp_path / f"report-{k}.json"
        shard = run(database, str(suite), "--shard", f"{k}/2", "--shard-durations", str(timed), "--json", str(part))
        assert shard.exit_code == 0, shard.output
        assert shard_of(part)["balanced_by"] == f"durations ({timed})"
        parts[k] = sorted(outcomes(part))
    assert parts == {1: ["h3"], 2: ["h1", "h2", "h4"]}

    # from the registry: the runs that finished before today
    record_yesterday(database, {"h1": 100.0, "h2": 1.0, "h3": 1.0, "h4": 1.0})
    registry = tmp_path / "registry.json"
    shard = run(database, str(suite), "--shard", "1/2", "--json", str(registry))
    assert shard.exit_code == 0, shard.output
    assert shard_of(registry)["balanced_by"] == "durations (the run registry)"
    assert sorted(outcomes(registry)) == ["h1"]
    assert "--shard 1/2: 1 of 4 scenario(s), split by durations (the run registry)" in shard.stdout


def test_report_merge_of_four_shards_equals_the_unsharded_night(database_with: Callable[..., Database],
                                                                 tmp_path: Path):
    from runner.report import html

    database = database_with()
    suite = write(tmp_path / "suite", {**FAULTS, "healthy-2": HEALTHY, "healthy-3": HEALTHY})
    whole = tmp_path / "whole.json"
    assert run(database, str(suite), "-j", "2", "--json", str(whole)).exit_code == 1
    shards = [tmp_path / f"shard-{k}.json" for k in range(1, 5)]
    for k, path in enumerate(shards, 1):
        shard = run(database, str(suite), "--shard", f"{k}/4", "--shard-durations", str(whole), "--json", str(path))
        assert shard.exit_code in (0, 1), shard.output
        assert outcomes(path), f"shard {k}/4 ran nothing"

    junit, night, page = tmp_path / "night.xml", tmp_path / "night.json", tmp_path / "night.html"
    merged = invoke("report", "merge", *map(str, shards), "--junit", str(junit), "--json", str(night),
                    "--html", str(page))
    assert merged.exit_code == 1, merged.output  # the worst shard's: failures, and nothing wrong with the merge
    assert outcomes(night) == outcomes(whole) == {
        "declared": "passed", "fail-one": "failed", "healthy": "passed", "healthy-2": "passed",
        "healthy-3": "passed", "skip-two": "failed"}
    doc = report(night)
    assert doc["error"] is None and doc["exit_code"] == 1 and doc["merged_from"] == list(map(str, shards))
    assert doc["totals"] == report(whole)["totals"]
    assert merged.stdout.rstrip().splitlines()[-1].startswith("6 scenarios: 4 passed, 2 failed, 0 errors, 0 not run")
    JUNIT_XSD.validate(str(junit))
    suites = {s["@name"]: s for s in JUNIT_XSD.to_dict(str(junit))["testsuite"]}
    assert sorted(suites) == sorted(outcomes(whole))
    assert suites["fail-one"]["@failures"] == 1 and suites["healthy"]["@failures"] == 0
    assert page.read_text() == html.render(doc)

    # a shard missing: the night is not whole, said in the reports and by exit 2
    missing = invoke("report", "merge", *map(str, shards[:3]), "--json", str(night))
    assert missing.exit_code == 2, missing.output
    assert "ye-run: shard 4/4 is missing" in missing.stderr
    absent = set(outcomes(whole)) - set(outcomes(shards[0])) - set(outcomes(shards[1])) - set(outcomes(shards[2]))
    assert {name for name, outcome in outcomes(night).items() if outcome == "not_run"} == absent
    assert "shard 4/4 is missing" in report(night)["error"]

    # a shard given twice, and a scenario in two reports
    twice = invoke("report", "merge", *map(str, shards), str(shards[0]), "--json", str(night))
    assert twice.exit_code == 2 and "shard 1/4 is given twice" in twice.stderr, twice.output
    overlap = invoke("report", "merge", str(whole), str(shards[0]), "--junit", str(junit))
    assert overlap.exit_code == 2, overlap.output
    (name, *_) = outcomes(shards[0])
    assert f"scenario {name!r} is in {whole} and in {shards[0]}" in overlap.stderr

    # shards of two different splits (a machine given --shard 2/3 in a matrix of four)
    other = json.loads(shards[1].read_text())
    other["shard"]["count"] = 3
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(other))
    mixed = invoke("report", "merge", str(shards[0]), str(odd), *map(str, shards[2:]), "--json", str(night))
    assert mixed.exit_code == 2, mixed.output
    assert f"the reports hold shards of different splits: {shards[0]}: 1/4, {odd}: 2/3" in mixed.stderr


def test_report_merge_needs_an_output_and_existing_reports(tmp_path: Path):
    nothing = invoke("report", "merge", str(tmp_path / "absent.json"), "--json", str(tmp_path / "out.json"))
    assert nothing.exit_code == 2 and "absent.json" in nothing.output
    existing = tmp_path / "shard.json"
    existing.write_text("{}")
    no_output = invoke("report", "merge", str(existing))
    assert no_output.exit_code == 2 and "--junit, --json or --html" in no_output.output

"""The three file reporters share one shape: handed a refused suite's first event, each renders it (no results)."""

from __future__ import annotations

import json
from pathlib import Path

from runner import resources
from runner.engine.events import Refusal, SessionFinished, SessionStarted
from runner.engine.results import Totals
from runner.engine.session import SessionOutcome
from runner.errors import ExitCode, Problem, ScenarioError
from runner.report.filereporter import FileReporter
from runner.report.html import HtmlReporter
from runner.report.json_report import JsonReporter
from runner.report.junit import JUnitReporter
from tests.report.test_junit import NOW, cases

PROBLEMS = [Problem("suite/bad.yaml", 2, 11, "$.variants", "expected a whole number"),
            Problem("suite/bad.yaml", 3, 1, "$.expect", "unknown key"),
            Problem("suite/worse.yaml", 1, 7, "$.name", "expected a string")]


def refused(tmp_path: Path) -> dict[str, FileReporter]:
    """Each reporter, through what a session refused for invalid files hands it: start, two events, finish."""
    error = ScenarioError(PROBLEMS)
    reporters = {"junit": JUnitReporter(tmp_path / "junit.xml"), "json": JsonReporter(tmp_path / "report.json"),
                 "html": HtmlReporter(tmp_path / "report.html")}
    outcome = SessionOutcome(exit_code=ExitCode.BAD_INPUT, error=error, started=NOW, finished=NOW)
    for reporter in reporters.values():
        assert isinstance(reporter, FileReporter)
        reporter.start()
        reporter.handle(SessionStarted(0, 1, "", False, refusal=Refusal.of(error)))
        reporter.handle(SessionFinished(Totals.of([]), 0.0, ExitCode.BAD_INPUT, str(error)))
        reporter.finish(outcome)
    return reporters


def test_each_invalid_file_is_a_junit_testsuite_of_its_own(tmp_path: Path):
    reporters = refused(tmp_path)
    found = cases(reporters["junit"].path)
    assert set(found) == {("suite/bad.yaml", "suite/bad.yaml"), ("suite/worse.yaml", "suite/worse.yaml")}
    bad = found[("suite/bad.yaml", "suite/bad.yaml")]["error"][0]
    assert bad["@message"] == "suite/bad.yaml:2:11: $.variants: expected a whole number"
    assert "suite/bad.yaml:3:1: $.expect: unknown key" in bad["$"]


def test_the_json_report_and_the_page_say_every_problem(tmp_path: Path):
    reporters = refused(tmp_path)
    doc = json.loads(reporters["json"].path.read_text())
    resources.validator("report.schema.json").validate(doc)
    assert doc["exit_code"] == 2 and doc["scenarios"] == [] and doc["error"].splitlines() == [str(p) for p in PROBLEMS]
    page = reporters["html"].path.read_text()
    assert 'id="verdict">ERROR<' in page and "suite/worse.yaml:1:7: $.name: expected a string" in page

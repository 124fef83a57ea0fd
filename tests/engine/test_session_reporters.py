"""Every report asked for is written, even when another reporter breaks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.db.connect import Database
from runner.engine.run import RunSettings
from runner.engine.session import Session, SessionOptions
from runner.errors import ExitCode
from runner.report.json_report import JsonReporter
from tests.cli.test_run_cli import url
from tests.db.helpers import load


class Broken:
    path = Path("broken.xml")

    def start(self) -> None: ...

    def handle(self, event: object) -> None: ...

    def finish(self, outcome: object) -> None:
        raise RuntimeError("a reporter bug")


def test_a_reporter_that_crashes_does_not_stop_the_others(db: Database, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("YE_CRASH_DIR", str(tmp_path / "crashes"))
    (tmp_path / "_defaults.yaml").write_text("tenant: {isolate: true}\ncleanup: always\n")
    scenario = load(tmp_path, "extends: _defaults.yaml\nname: reporters\nsimulate_img_gen: true\n")
    report = tmp_path / "report.json"
    options = SessionOptions(url(db), settings=RunSettings(asset_dir=tmp_path / "assets"), reference_pipeline=True)
    outcome = Session([scenario], options, [Broken(), JsonReporter(report)]).run()
    assert outcome.exit_code == ExitCode.BUG
    assert outcome.error is not None and "a reporter bug" in str(outcome.error) and "broken.xml" in str(outcome.error)
    assert len(list((tmp_path / "crashes").iterdir())) == 1  # the traceback, saved
    doc = json.loads(report.read_text())  # written after the broken one
    assert doc["scenarios"][0]["outcome"] == "passed" and len(doc["scenarios"][0]["jobs"]) == 1


class Recorder:
    """Every event, in order, and whether the reporter was finished."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self.finished = False

    def start(self) -> None: ...

    def handle(self, event: object) -> None:
        self.events.append(event)

    def finish(self, outcome: object) -> None:
        self.finished = True


def test_a_refused_suite_is_the_first_event_and_opens_no_database(tmp_path: Path):
    """Load problems reach every reporter through the event stream; the database given is never reached (it is
    unreachable here: that would be exit 3)."""
    from runner.engine.events import SessionFinished, SessionStarted
    from runner.errors import Problem, ScenarioError
    from runner.scenario.suite import Suite

    problem = Problem("bad.yaml", 2, 11, "$.variants", "expected a whole number")
    recorder = Recorder()
    options = SessionOptions("postgresql://nobody@127.0.0.1:1/x")
    outcome = Session(Suite(error=ScenarioError([problem])), options, [recorder]).run()
    assert outcome.exit_code == ExitCode.BAD_INPUT and isinstance(outcome.error, ScenarioError)
    first, last = recorder.events
    assert isinstance(first, SessionStarted) and first.refusal is not None
    assert first.refusal.problems == (problem,) and first.refusal.exit_code == ExitCode.BAD_INPUT
    assert isinstance(last, SessionFinished) and last.exit_code == ExitCode.BAD_INPUT and recorder.finished

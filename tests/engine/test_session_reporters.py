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

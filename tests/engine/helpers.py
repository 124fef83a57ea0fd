"""Running a scenario through the engine the way the CLI does, on the session's database."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from runner.db.connect import Database
from runner.definition import DEFAULT, Definition
from runner.engine.events import Emitter, Event
from runner.engine.results import ScenarioResult
from runner.engine.run import RunSettings, ScenarioRun
from tests.db.helpers import load


@dataclasses.dataclass
class Outcome:
    result: ScenarioResult
    run: ScenarioRun
    events: list[Event]

    def kinds(self) -> set[str]:
        return {f.kind for f in self.result.all_failures}

    def failure(self, kind: str):  # type: ignore[no-untyped-def]
        return next(f for f in self.result.all_failures if f.kind == kind)


def run(db: Database, tmp_path: Path, text: str, stop: threading.Event | None = None, handlers=(),
        **settings) -> Outcome:
    (tmp_path / "_defaults.yaml").write_text("tenant: {isolate: true}\ncleanup: never\n")
    definition = settings.pop("definition", None)
    scenario = load(tmp_path, "extends: _defaults.yaml\n" + text)
    if definition is not None:  # as a definition file would have given it: its steps' bounds too
        bounds = tuple((s.name, s.timeout) for s in definition.steps) if scenario.timeouts.bounds else ()
        scenario = dataclasses.replace(scenario, definition=definition,
                                       timeouts=dataclasses.replace(scenario.timeouts, bounds=bounds))
    events: list[Event] = []
    config = RunSettings(**{"reference_pipeline": True, "asset_dir": tmp_path / "assets", **settings})
    runner = ScenarioRun(scenario, db, config, Emitter([events.append, *handlers]), stop)
    return Outcome(runner.execute(), runner, events)


def retrying(step: str, to: tuple[str, str]) -> Definition:
    """The built-in definition with `step` retried at `to` instead."""
    steps = tuple(dataclasses.replace(s, retry_to=to) if s.name == step else s for s in DEFAULT.variant_steps)
    return dataclasses.replace(DEFAULT, variant_steps=steps, name=f"{step} retried at {to}", sha256="")

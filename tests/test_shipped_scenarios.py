"""Every scenario in scenarios/ passes exactly as it declares, on each server, with the reference pipeline."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from runner.db.connect import Database
from runner.engine.events import Emitter
from runner.engine.run import RunSettings, ScenarioRun
from runner.scenario import discover, loader

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = discover.scenario_files([str(ROOT / "scenarios")])


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: Path(p).stem)
def test_shipped_scenario_passes(db: Database, tmp_path: Path, path: str):
    scenario = loader.load(path)
    if scenario.tenant.id == "ye_pipeline_test_tenant":  # the smoke test's shared tenant: keep runs apart here
        scenario = dataclasses.replace(scenario, tenant=dataclasses.replace(scenario.tenant, isolate=True))
    settings = RunSettings(reference_pipeline=True, asset_dir=tmp_path / "assets")
    result = ScenarioRun(scenario, db, settings, Emitter()).execute()
    assert result.outcome == "passed", [f.text() for f in result.all_failures] or result.error
    assert result.jobs and all(job.outcome == "passed" for job in result.jobs)

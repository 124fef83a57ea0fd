"""The schema, the dataclasses and the docs agree (schemathesis' config-sync idea)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner import durations, resources
from runner.pipeline.config import PipelineConfig
from runner.scenario import loader, model

ROOT = Path(__file__).resolve().parents[2]


def _schema_properties(schema: dict, prefix: str = "") -> Iterator[tuple[str, dict]]:
    for name, spec in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        yield path, spec
        yield from _schema_properties(spec, path + ".")
        for branch in spec.get("anyOf", []):
            yield from _schema_properties(branch, path + ".")
        items = spec.get("items", {})
        yield from _schema_properties(items, path + "[].")


def all_properties() -> list[tuple[str, dict]]:
    scenario = [(p, s) for p, s in _schema_properties(resources.schema("scenario.schema.json"))]
    pipeline = [(f"reference_pipeline.{p}", s)
                for p, s in _schema_properties(resources.schema("pipeline.schema.json"))]
    return scenario + pipeline


def test_committed_schemas_match_the_generator():
    spec = importlib.util.spec_from_file_location("build_schemas", ROOT / "tools" / "build_schemas.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, schema in module.OUTPUTS.items():
        committed = (ROOT / "schemas" / name).read_text(encoding="utf-8")
        assert committed == module.render(schema), f"schemas/{name} is stale: run tools/build_schemas.py"


@pytest.mark.parametrize("path,spec", all_properties(), ids=[p for p, _ in all_properties()])
def test_every_property_has_a_description(path: str, spec: dict):
    assert spec.get("description"), path


def _minimal(tmp_path: Path) -> model.Scenario:
    file = tmp_path / "minimal.yaml"
    file.write_text("name: minimal\n", encoding="utf-8")
    return loader.load(file)


def _dur(text: str) -> float:
    return durations.parse(text)


def expected_defaults(s: model.Scenario) -> dict[str, Any]:
    """Schema path -> (what the loaded minimal scenario holds, how to read the schema default)."""
    pipe = PipelineConfig()
    return {
        "description": (s.description, str),
        "tags": (list(s.tags), list),
        "tenant.id": (s.tenant.id, str),
        "tenant.name": (s.tenant.name, str),
        "tenant.isolate": (s.tenant.isolate, bool),
        "store": (s.store.kind, str),
        "tone_style": (s.tone_style.kind, str),
        "images": ([f"pipeline_test/{p.name}" for p in s.images], list),
        "job_inputs.desc_kor": (s.job_inputs.desc_kor, str),
        "job_inputs.extra": (dict(s.job_inputs.extra), dict),
        "variants": (s.variants, int),
        "start": (s.start, str),
        "mode": (s.mode.type, str),
        "mode.interval": (model.Mode().interval, _dur),
        "mode.max_in_flight": (model.Mode().max_in_flight, int),
        "simulate_img_gen": (s.simulate_img_gen.enabled, bool),
        "simulate_img_gen.delay": (model.Simulation().delay, _dur),
        "simulate_img_gen.fail_variants": (list(model.Simulation().fail_variants), list),
        "observe": (s.observe, bool),
        "cleanup": (s.cleanup, str),
        "expect.retries": (dict(s.expect.retries), dict),
        "expect.failures": (list(s.expect.failures), list),
        "expect.detect": (list(s.expect.detect), list),
        "expect.failures[].variants": ("all" if model.ExpectedFailure("x").variants is None else None, str),
        "expect.failures[].required": (model.ExpectedFailure("x").required, bool),
        "expect.latency": (dict(s.expect.latency), dict),
        "expect.sql": (list(s.expect.sql), list),
        "timeouts.step": (s.timeouts.step, _dur),
        "timeouts.steps": (dict(s.timeouts.steps), dict),
        "timeouts.stall": (s.timeouts.stall, _dur),
        "timeouts.job": (s.timeouts.job, _dur),
        "timeouts.grace": (s.timeouts.grace, _dur),
        "fixtures": (list(s.fixtures), list),
        "ad_copy": (s.ad_copy, str),
        "seed_rows": ({} if s.seed_rows == s.definition.seed_rows and not s.seed_rows_left_out else None, dict),
        "reference_pipeline": ({} if s.reference_pipeline == PipelineConfig() else None, dict),
        "reference_pipeline.seed": (pipe.seed, int),
        "reference_pipeline.slots": (pipe.slots, int),
        "reference_pipeline.with_ye": (pipe.with_ye, bool),
        "reference_pipeline.ye_poll": (pipe.ye_poll, _dur),
        "reference_pipeline.sweep": (pipe.sweep, _dur),
        "reference_pipeline.max_retries": (pipe.max_retries, int),
        "reference_pipeline.retry_backoff": (pipe.retry_backoff, _dur),
        "reference_pipeline.latency.default": (pipe.default_latency.a, _dur),
        "reference_pipeline.latency.steps": (dict(pipe.latency), dict),
        "reference_pipeline.faults": (list(pipe.faults), list),
        "reference_pipeline.faults[].probability": (1.0, float),
        "reference_pipeline.faults[].times": (1, int),
    }


def test_schema_defaults_equal_what_the_loader_applies(tmp_path: Path):
    table = expected_defaults(_minimal(tmp_path))
    with_default = {p: s["default"] for p, s in all_properties() if "default" in s and s["default"] != {}
                    or ("default" in s and p in table)}
    assert sorted(set(with_default) - set(table)) == [], "schema defaults not covered by this test"
    for path, default in with_default.items():
        actual, read = table[path]
        assert actual == read(default), f"{path}: schema says {default!r}, loader applies {actual!r}"


def test_docs_describe_every_schema_property():
    text = (ROOT / "docs" / "scenario-format.md").read_text(encoding="utf-8")
    missing = [path for path, _ in all_properties() if f"`{path}`" not in text]
    assert missing == [], f"docs/scenario-format.md lacks: {missing}"


def test_timeout_defaults_are_declared_once_in_the_model(monkeypatch: pytest.MonkeyPatch):
    """The schema's timeout defaults are read from the model (and the definition's step bound), never restated."""
    import dataclasses

    from runner import definition

    moved = dataclasses.make_dataclass("Timeouts", [("step", float, 61.0), ("stall", float, 62.0),
                                                    ("job", float, 63.0), ("grace", float, 4.0)], frozen=True)
    monkeypatch.setattr(model, "Timeouts", moved)
    monkeypatch.setattr(definition, "STEP_TIMEOUT", 64.0)
    spec = importlib.util.spec_from_file_location("build_schemas_moved", ROOT / "tools" / "build_schemas.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    timeouts = module.SCENARIO["properties"]["timeouts"]["properties"]
    assert {k: timeouts[k]["default"] for k in ("step", "stall", "job", "grace")} == {
        "step": "61s", "stall": "62s", "job": "63s", "grace": "4s"}
    step_def = module.STEP_DEF["anyOf"][1]["properties"]["timeout"]
    assert step_def["default"] == "64s"

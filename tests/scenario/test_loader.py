"""Loading scenarios into typed, frozen dataclasses with defaults applied."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from runner.definition import DEFAULT
from runner.errors import ScenarioError
from runner.resources import default_images_dir
from runner.scenario import discover, loader, model

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("path", discover.scenario_files([str(SCENARIOS)]), ids=lambda p: Path(p).stem)
def test_every_shipped_scenario_validates(path: str):
    scenario = loader.load(path)
    assert scenario.name
    assert scenario.expect.steps


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_scenario_declares_the_schema_for_editors(path: Path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=../schemas/scenario.schema.json"


def test_smoke_loads_with_defaults_applied():
    s = loader.load(SCENARIOS / "smoke.yaml")
    assert s.name == "smoke"
    assert s.variants == 3
    assert s.tenant == model.Tenant(id="ye_pipeline_test_tenant", name="YE pipeline test tenant", isolate=False)
    assert s.mode == model.Mode(type="once")
    assert s.mode.job_limit == 1
    assert s.simulate_img_gen == model.Simulation(enabled=True, delay=0.0, fail_variants=())
    assert s.start == "user_img_input"
    assert s.expect.steps == DEFAULT.variant_names[1:] and s.expect.job_steps == DEFAULT.job_names
    assert s.expect.final_variant == model.State("iou_eval", "done")
    assert s.expect.final_job == model.State("instagram_feed_gen", "done")
    assert s.timeouts == model.Timeouts(step=120.0, steps=(), stall=120.0, job=600.0)
    assert s.images == tuple(default_images_dir() / n for n in model.DEFAULT_IMAGE_NAMES)
    assert all(p.is_file() for p in s.images)
    assert s.job_inputs.desc_kor == "YE 파트 테스트용 이미지"
    assert s.cleanup == "on_success" and s.observe is True
    assert s.store == model.RowRef("none") and s.tone_style == model.RowRef("none")


def test_dataclasses_are_frozen():
    s = loader.load(SCENARIOS / "smoke.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.variants = 5  # type: ignore[misc]


def test_extends_merges_mappings_and_replaces_values():
    s = loader.load(SCENARIOS / "interval.yaml")
    assert s.tenant == model.Tenant(id="ye_regression_test", name="YE pipeline test tenant", isolate=True)
    assert s.cleanup == "always"
    assert s.tags == ("regression",)
    assert s.mode == model.Mode(type="interval", jobs=4, interval=0.3, max_in_flight=3)
    assert s.timeouts.step == 60.0 and s.timeouts.job == 300.0


def test_yh_start_and_partial_pipeline():
    yh = loader.load(SCENARIOS / "yh_start.yaml")
    assert yh.start == "img_gen" and yh.expect.steps[0] == "vlm_analyze"
    partial = loader.load(SCENARIOS / "partial_pipeline.yaml")
    assert partial.expect.steps == ("img_gen", "vlm_analyze", "yolo_detect", "planner")
    assert partial.expect.final_variant == model.State("planner", "done")
    assert partial.reference_pipeline.stop_after == "planner"


def test_expected_failure_and_pipeline_faults_are_typed():
    s = loader.load(SCENARIOS / "expected_failure.yaml")
    assert s.expect.failures == (model.ExpectedFailure("ocr_eval", (2,), True),)
    assert s.expect.failure_for("ocr_eval", 2) is not None
    assert s.expect.failure_for("ocr_eval", 1) is None
    assert s.expect.final_job is None  # the job row is judged by the definition's job-row rule
    fault = s.reference_pipeline.faults[0]
    assert (fault.kind, fault.step, fault.variants) == ("fail", "ocr_eval", (2,))


def test_fixtures_sql_and_specific_image():
    s = loader.load(SCENARIOS / "fixtures_and_sql.yaml")
    assert s.fixtures[0].table == "txt_ad_copy_generations" and s.ad_copy == "Autumn sale, 20% off everything"
    assert dict(s.fixtures[0].rows[0])["refined_ad_copy_eng"] == "${scenario.ad_copy}, today only"
    assert [c.name for c in s.expect.sql] == ["the English, the refined and the Korean ad copy",
                                              "the feed was built from the refined ad copy",
                                              "every variant shares the job's image asset",
                                              "the job belongs to the run's tenant"]
    assert s.expect.sql[0].equals == 3 and s.expect.sql[0].compare_value
    assert s.expect.sql[2].rows == 3 and not s.expect.sql[2].compare_value
    image = loader.load(SCENARIOS / "specific_image.yaml")
    assert image.images[0].resolve() == (ROOT / "pipeline_test" / "pipeline_test_image16.jpg").resolve()
    assert image.simulate_img_gen.delay == pytest.approx(0.05)


def test_anchors_and_merge_keys_work(tmp_path: Path):
    path = write(tmp_path, "anchors.yaml", """
name: anchors
timeouts: &limits
  step: 10s
  stall: 20s
  job: 1m
expect:
  latency:
    planner: &fast {p50: 100ms, max: 1s}
    overlay:
      <<: *fast
      max: 2s
""")
    s = loader.load(path)
    assert s.timeouts.stall == 20.0
    assert dict(s.expect.latency)["planner"] == model.LatencyLimit(p50=0.1, max=1.0)
    assert dict(s.expect.latency)["overlay"] == model.LatencyLimit(p50=0.1, max=2.0)


def test_extends_cycle_is_reported(tmp_path: Path):
    write(tmp_path, "a.yaml", "extends: b.yaml\nname: a\n")
    write(tmp_path, "b.yaml", "extends: a.yaml\nname: b\n")
    with pytest.raises(ScenarioError) as caught:
        loader.load(tmp_path / "a.yaml")
    assert "extends cycle" in str(caught.value)


def test_errors_in_a_base_file_point_into_the_base(tmp_path: Path):
    write(tmp_path, "_base.yaml", "variants: 3\ntimeouts:\n  step: 5 min\n")
    child = write(tmp_path, "child.yaml", "extends: _base.yaml\nname: child\n")
    with pytest.raises(ScenarioError) as caught:
        loader.load(child)
    (problem,) = caught.value.problems
    assert problem.file.endswith("_base.yaml") and (problem.line, problem.col) == (3, 9)


def test_override_in_child_replaces_base_value_and_location(tmp_path: Path):
    write(tmp_path, "_base.yaml", "variants: 3\nmode: once\n")
    child = write(tmp_path, "child.yaml", "extends: _base.yaml\nname: child\nvariants: 0\n")
    with pytest.raises(ScenarioError) as caught:
        loader.load(child)
    (problem,) = caught.value.problems
    assert problem.file.endswith("child.yaml") and problem.line == 3


def test_isolated_tenant_and_store_reference(tmp_path: Path):
    path = write(tmp_path, "s.yaml", "name: s\ntenant: {id: qa_team, isolate: true}\nstore: any\n"
                 "tone_style: {id: tone-1}\n")
    s = loader.load(path)
    assert s.tenant.isolate and s.tenant.id == "qa_team"
    assert s.store == model.RowRef("any") and s.tone_style == model.RowRef("id", "tone-1")


def test_name_defaults_to_file_stem(tmp_path: Path):
    assert loader.load(write(tmp_path, "my_case.yaml", "variants: 2\n")).name == "my_case"


def test_oversized_file_is_refused(tmp_path: Path):
    path = write(tmp_path, "big.yaml", "name: big\ndescription: " + "x" * 1_100_000 + "\n")
    with pytest.raises(ScenarioError) as caught:
        loader.load(path)
    assert "the limit is" in str(caught.value)


def test_many_errors_are_all_reported(tmp_path: Path):
    path = write(tmp_path, "many.yaml", "varients: 3\nvariants: 0\nmode: nope\ncleanup: sometimes\n")
    with pytest.raises(ScenarioError) as caught:
        loader.load(path)
    assert [p.line for p in caught.value.problems] == [1, 2, 3, 4]


def test_pipeline_config_file_loads(tmp_path: Path):
    path = write(tmp_path, "pipe.yaml", """
seed: 7
slots: 2
latency:
  default: 10ms
  steps:
    planner: {uniform: [1ms, 3ms]}
    overlay: {lognormal: {median: 20ms, sigma: 0.3}}
faults:
  - {kind: hang, step: planner, variants: [1], jobs: [2]}
""")
    config = loader.load_pipeline_config(path)
    assert config.seed == 7 and config.slots == 2
    assert config.latency_for("vlm_judge").a == pytest.approx(0.01)
    assert config.latency_for("planner").kind == "uniform"
    assert config.latency_for("overlay").kind == "lognormal"
    assert config.faults[0].targets("planner", 1, 2) and not config.faults[0].targets("planner", 1, 1)

"""A scenario names the pipeline definition it is written for (`pipeline_file:`), or its folder does (the project
config's `[pipelines]`): one suite mixes definitions, and an unknown step says which definition is in force."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.definition import DEFAULT
from runner.errors import ScenarioError
from runner.scenario import loader, pipelines, suite
from tests.test_definition import SCENARIO, TEAM

PLAIN = "name: plain\ntags: [nightly]\nsimulate_img_gen: true\ntenant: {id: ye_plain_test}\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def night(tmp_path: Path) -> Path:
    """suite/plain.yaml (the built-in steps) and suite/team.yaml (a renamed and an added step, its own definition)."""
    write(tmp_path / "pipelines" / "team.yaml", TEAM)
    write(tmp_path / "suite" / "plain.yaml", PLAIN)
    write(tmp_path / "suite" / "team.yaml", "pipeline_file: ../pipelines/team.yaml\ntags: [custom]\n" + SCENARIO)
    return tmp_path / "suite"


def test_one_suite_mixes_definitions_and_deselecting_one_leaves_the_other(tmp_path: Path):
    folder = night(tmp_path)
    whole = suite.suite(suite.Request((str(folder),)))
    assert whole.error is None, whole.error
    by_name = {s.name: s.definition for s in whole.scenarios}
    assert by_name["plain"] is DEFAULT
    assert by_name["team"].name == "team pipeline" and by_name["team"].source == str(tmp_path / "pipelines" /
                                                                                      "team.yaml")
    skipped = suite.suite(suite.Request((str(folder),), skip_tags=("custom",)))
    assert skipped.error is None and [s.name for s in skipped.scenarios] == ["plain"]


def test_the_scenarios_own_definition_wins_over_the_runs(tmp_path: Path):
    folder = night(tmp_path)
    other = write(tmp_path / "other.yaml", TEAM.replace("team pipeline", "other pipeline"))
    chosen = suite.suite(suite.Request((str(folder / "team.yaml"),), pipeline_file=other))
    assert chosen.error is None and chosen.scenarios[0].definition.name == "team pipeline"


def test_a_definition_named_in_a_base_file_is_relative_to_that_file(tmp_path: Path):
    write(tmp_path / "shared" / "team.yaml", TEAM)
    write(tmp_path / "shared" / "_team_base.yaml", "pipeline_file: team.yaml\n")
    scenario = write(tmp_path / "suite" / "s.yaml", "extends: ../shared/_team_base.yaml\n" + SCENARIO)
    assert loader.load(scenario, definitions=suite.definitions_in_force()).definition.name == "team pipeline"


def test_each_definition_file_is_read_once_per_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = night(tmp_path)
    write(folder / "team2.yaml", "name: team2\npipeline_file: ../pipelines/team.yaml\n" + SCENARIO.split("\n", 1)[1])
    reads = []
    real = loader.load_definition
    monkeypatch.setattr(loader, "load_definition", lambda path: reads.append(path) or real(path))
    assert suite.suite(suite.Request((str(folder),))).error is None
    assert len(reads) == 1


def test_a_missing_definition_is_located_at_the_scenarios_key(tmp_path: Path):
    scenario = write(tmp_path / "s.yaml", "name: s\npipeline_file: nowhere.yaml\n")
    with pytest.raises(ScenarioError) as caught:
        loader.load(scenario)
    assert [str(p) for p in caught.value.problems] == [
        f"{scenario}:2:16: $.pipeline_file: pipeline definition file not found: {tmp_path / 'nowhere.yaml'}"]


def test_an_invalid_definition_is_its_own_lines_and_the_scenarios_key(tmp_path: Path):
    write(tmp_path / "bad.yaml", "variant_steps: [a, b]\nstatuses: [done, queued]\n")
    scenario = write(tmp_path / "s.yaml", "name: s\npipeline_file: bad.yaml\n")
    with pytest.raises(ScenarioError) as caught:
        loader.load(scenario)
    lines = [str(p) for p in caught.value.problems]
    assert f"{tmp_path / 'bad.yaml'}:2:11: $.statuses: the statuses must include 'failed'" in lines
    assert f"{scenario}:2:16: $.pipeline_file: the pipeline definition bad.yaml is invalid (its problems are " \
           "listed at its own lines)" in lines


def test_an_unknown_step_names_the_built_in_definition_and_how_to_choose_another(tmp_path: Path):
    scenario = write(tmp_path / "s.yaml", "name: s\nexpect: {latency: {legibility_eval: {max: 1s}}}\n")
    with pytest.raises(ScenarioError) as caught:
        loader.load(scenario)
    (problem,) = caught.value.problems
    assert problem.message == (
        "unknown step name 'legibility_eval'; did you mean 'readability_eval'? (steps of the built-in pipeline "
        "definition; to use another: `pipeline_file: FILE` in the scenario, --pipeline-file FILE, or the project "
        "config)")


def test_an_unknown_step_names_the_definition_file_and_what_chose_it(tmp_path: Path):
    team = write(tmp_path / "team.yaml", TEAM)
    own = write(tmp_path / "own.yaml", "name: own\npipeline_file: team.yaml\nexpect: {stop_after: vlm_judge}\n")
    by_run = write(tmp_path / "run.yaml", "name: run\nexpect: {stop_after: vlm_judge}\n")
    refused = suite.suite(suite.Request((str(own), str(by_run)), pipeline_file=team))
    assert isinstance(refused.error, ScenarioError)
    messages = {Path(p.file).name: p.message for p in refused.error.problems}
    assert f"(steps of the pipeline definition {team}, named by this scenario's pipeline_file;" \
           in messages["own.yaml"]
    assert f"(steps of the pipeline definition {team}, named by --pipeline-file;" in messages["run.yaml"]


def test_a_folder_names_a_definition_and_a_scenario_in_it_may_still_name_its_own(tmp_path: Path):
    folder = night(tmp_path)
    write(folder / "custom" / "folder.yaml", SCENARIO.replace("name: team", "name: by-folder"))
    other = write(tmp_path / "pipelines" / "other.yaml", TEAM.replace("team pipeline", "other pipeline"))
    write(folder / "custom" / "own.yaml", "name: own\npipeline_file: ../../pipelines/other.yaml\n"
          + SCENARIO.split("\n", 1)[1])
    mapped = pipelines.Folder(folder / "custom", tmp_path / "pipelines" / "team.yaml", "ye-run.toml:7")
    chosen = suite.suite(suite.Request((str(folder),), folders=(mapped,)))
    assert chosen.error is None, chosen.error
    assert {s.name: s.definition.name for s in chosen.scenarios} == {
        "plain": DEFAULT.name, "team": "team pipeline", "by-folder": "team pipeline", "own": "other pipeline"}
    assert other.is_file()


def test_a_folders_definition_is_named_in_an_unknown_steps_message(tmp_path: Path):
    team = write(tmp_path / "team.yaml", TEAM)
    scenario = write(tmp_path / "custom" / "s.yaml", "name: s\nexpect: {stop_after: vlm_judge}\n")
    mapped = pipelines.Folder(tmp_path / "custom", team, "ye-run.toml:7")
    refused = suite.suite(suite.Request((str(scenario),), folders=(mapped,)))
    assert isinstance(refused.error, ScenarioError)
    assert f"definition {team}, named for {tmp_path / 'custom'} by ye-run.toml:7;" in refused.error.problems[0].message

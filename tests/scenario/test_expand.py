"""Variables (${NAME}, ${NAME:-default}, --var, the environment) and matrices of scenario instances."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli.main import cli
from runner.errors import ScenarioError
from runner.scenario import loader


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "case.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_variables_come_from_var_then_the_environment_then_the_default(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch):
    path = write(tmp_path, 'name: v\ntenant: {id: "qa_${BRANCH}_test"}\njob_inputs: {desc_kor: "${DESC:-기본}"}\n'
                           'description: "$${KEEP} stays"\n'
                           "fixtures:\n  - table: ad_copies\n    rows: [{job_id: '${job.id}', copy_text: x}]\n")
    monkeypatch.setenv("BRANCH", "main")
    scenario = loader.load(path)
    assert scenario.tenant.id == "qa_main_test" and scenario.job_inputs.desc_kor == "기본"
    assert dict(scenario.fixtures[0].rows[0]) == {"job_id": "${job.id}", "copy_text": "x"}
    assert scenario.description == "${KEEP} stays"
    overridden = loader.load(path, values={"BRANCH": "feature_x", "DESC": "설명"})
    assert overridden.tenant.id == "qa_feature_x_test" and overridden.job_inputs.desc_kor == "설명"


def test_an_undefined_variable_is_a_located_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("NOPE", raising=False)
    path = write(tmp_path, "name: v\ntenant:\n  id: qa_${NOPE}_test\n")
    with pytest.raises(ScenarioError) as caught:
        loader.load(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:3:7: $.tenant.id: undefined variable ${{NOPE}}: set it in the environment or with --var NOPE=VALUE "
        "(or give a default: ${NOPE:-value})"]


def test_a_matrix_makes_one_named_instance_per_combination(tmp_path: Path):
    path = write(tmp_path, "name: smoke\nmatrix:\n  variants: [1, 3, 5]\n  simulate_img_gen: [true, false]\n")
    found = loader.load_instances(path)
    assert [s.name for s in found] == [f"smoke[variants={v},simulate_img_gen={s}]" for v in (1, 3, 5)
                                       for s in ("true", "false")]
    assert [(s.variants, s.simulate_img_gen.enabled) for s in found][:2] == [(1, True), (1, False)]
    with pytest.raises(ScenarioError, match="the matrix makes 6 scenarios"):
        loader.load(path)


def test_matrix_errors_are_located_once_per_problem(tmp_path: Path):
    path = write(tmp_path, "name: m\nmatrix:\n  variants: [1, 0, lots]\n  name: [a]\n  mode: []\n")
    with pytest.raises(ScenarioError) as caught:
        loader.load_instances(path)
    assert [str(p).split(": ", 1)[1] for p in caught.value.problems] == [
        "$.matrix.name: 'name' cannot vary in a matrix", "$.matrix.mode: expected a non-empty list of values"]
    path.write_text("name: m\nmatrix:\n  variants: [1, 0, lots]\n")
    with pytest.raises(ScenarioError) as caught:
        loader.load_instances(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:3:17: $.variants: must be at least 1, got 0",
        f"{path}:3:20: $.variants: expected a whole number, got a string ('lots')"]


def test_the_cli_shows_instances_and_takes_var(tmp_path: Path):
    path = write(tmp_path, 'name: s\nmatrix: {variants: [2, 4]}\njob_inputs: {desc_kor: "${D}"}\n')
    validated = CliRunner().invoke(cli, ["validate", str(path), "--var", "D=x"])
    assert validated.exit_code == 0 and "ok (2 instances: s[variants=2], s[variants=4])" in validated.stdout
    listed = CliRunner().invoke(cli, ["list", str(path), "--var", "D=x", "--json"])
    assert listed.exit_code == 0 and '"name": "s[variants=4]"' in listed.stdout
    dry = CliRunner().invoke(cli, ["run", "--dry-run", str(path), "--var", "D=x"])
    assert dry.exit_code == 0 and dry.stdout.count("scenario s[variants=") == 2
    missing = CliRunner().invoke(cli, ["validate", str(path)])
    assert missing.exit_code == 1 and "undefined variable ${D}" in missing.stdout

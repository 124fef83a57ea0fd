"""Variables (${NAME}, ${NAME:-default}, --var, the environment) and matrices of scenario instances."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli.main import cli
from runner.errors import ScenarioError
from runner.scenario import expand, loader

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "pipeline_test" / "pipeline_test_image9.jpg"


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


@pytest.mark.parametrize("given, expected", [
    ({}, "x"), ({"B": "b"}, "b"), ({"A": "a"}, "a"), ({"A": "a", "B": "b"}, "a"), ({"A": ""}, ""),
])
def test_a_default_may_hold_another_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             given: dict[str, str], expected: str):
    monkeypatch.delenv("A", raising=False)
    monkeypatch.delenv("B", raising=False)
    path = write(tmp_path, 'name: v\njob_inputs: {desc_kor: "<${A:-${B:-x}}>"}\n')
    assert loader.load(path, values=given).job_inputs.desc_kor == f"<{expected}>"


def test_nested_defaults_keep_escapes_placeholders_and_braces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("A", raising=False)
    path = write(tmp_path, 'name: v\ndescription: "$${A:-${B}} ${A:-{x}} ${A:-a${A:-b${A:-c}}d}"\n'
                           "fixtures:\n  - table: ad_copies\n    rows: [{job_id: '${A:-${job.id}}', copy_text: x}]\n")
    scenario = loader.load(path)
    assert scenario.description == "${A:-${B}} {x} abcd"
    assert dict(scenario.fixtures[0].rows[0])["job_id"] == "${job.id}"


def test_a_default_that_is_not_used_is_not_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("NOPE", raising=False)
    path = write(tmp_path, 'name: v\ndescription: "${A:-${NOPE}}"\n')
    assert loader.load(path, values={"A": "set"}).description == "set"
    with pytest.raises(ScenarioError, match=r"undefined variable \$\{NOPE\}"):
        loader.load(path, values={})


def test_defaults_nested_too_deep_are_a_located_error(tmp_path: Path):
    depth = expand.MAX_NESTING + 1
    path = write(tmp_path, "name: v\ndescription: \"" + "${A:-" * depth + "x" + "}" * depth + "\"\n")
    with pytest.raises(ScenarioError) as caught:
        loader.load(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:2:14: $.description: variable defaults nested deeper than {expand.MAX_NESTING} levels"]
    ok = write(tmp_path, "name: v\ndescription: \"" + "${A:-" * (depth - 1) + "x" + "}" * (depth - 1) + "\"\n")
    assert loader.load(ok).description == "x"


def test_substituted_text_is_bounded(tmp_path: Path):
    """An anchored string holding a variable, aliased thousands of times, would copy a long value each time."""
    lines = ['name: v', f'description: &d "${{BIG}}{"y" * 1000}"', "tags_alias: [" + ", ".join(["*d"] * 2000) + "]"]
    path = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(ScenarioError) as caught:
        loader.load(path, values={"BIG": "z" * 1000})
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.path) == (str(path), 2, "$.tags_alias[999]")  # the anchor's line
    assert problem.message == (f"with variables substituted, the file's text would pass {expand.MAX_SUBSTITUTED:,} "
                               "characters; refusing to build it")


BOMB = "name: bomb\nmatrix:\n" + "".join(f"  k{k}: [{', '.join(str(v) for v in range(20))}]\n" for k in range(16))
"""16 keys x 20 values: about 1 KB of YAML that multiplies into 20**16 instances."""


def test_a_matrix_over_the_limit_is_refused_at_matrix(tmp_path: Path):
    fifteen = ", ".join(map(str, range(15)))
    path = write(tmp_path, f"name: m\nmatrix:\n  k1: [{fifteen}]\n  k2: [{fifteen}]\n")
    with pytest.raises(ScenarioError) as caught:
        loader.load_instances(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:2:1: $.matrix: the matrix makes 225 instances; the limit is {expand.MAX_INSTANCES}"]


def test_a_matrix_bomb_is_refused_without_building_the_product(tmp_path: Path):
    """Under a 1 GB address-space limit: building 20**16 combinations would end in MemoryError (a bug, exit 70)."""
    path = write(tmp_path, BOMB)
    for command, code in (("validate", 1), ("list", 2)):
        result = subprocess.run(
            [sys.executable, "-c", "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
             "from runner.cli.main import main; sys.argv = ['ye-run'] + sys.argv[1:]; main()", command, str(path)],
            capture_output=True, text=True, cwd=ROOT, check=False)
        assert result.returncode == code, result.stderr
        assert f"$.matrix: the matrix makes {20 ** 16:,} instances; the limit is 200" in result.stdout + result.stderr


def test_extends_cannot_multiply_a_matrix_past_the_limit(tmp_path: Path):
    (tmp_path / "_base.yaml").write_text("name: b\nmatrix:\n  variants: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"
                                         "  cleanup: [always, never, on_success]\n")
    path = write(tmp_path, "extends: _base.yaml\nmatrix:\n  mode: [once, {interval: 1s, jobs: 2}, "
                           "{interval: 2s, jobs: 2}, {interval: 3s, jobs: 2}, {interval: 4s, jobs: 2}, "
                           "{interval: 5s, jobs: 2}, {interval: 6s, jobs: 2}, {interval: 7s, jobs: 2}]\n")
    with pytest.raises(ScenarioError) as caught:
        loader.load_instances(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:2:1: $.matrix: the matrix makes 240 instances; the limit is 200"]


def test_matrix_labels_that_would_collide_use_more_of_the_path(tmp_path: Path):
    for folder in ("a", "b", "c/a", "c/d"):
        (tmp_path / folder).mkdir(parents=True)
        shutil.copy(IMAGE, tmp_path / folder / "x.jpg")
    shutil.copy(IMAGE, tmp_path / "y.jpg")
    path = write(tmp_path, "name: m\nmatrix:\n  images: [[a/x.jpg], [b/x.jpg], [c/a/x.jpg], [y.jpg], "
                           "[c/d/x.jpg, y.jpg]]\n  variants: [2]\n")
    expected = ["a/x.jpg", "b/x.jpg", "c/a/x.jpg", "y.jpg", "x.jpg+y.jpg"]
    assert [s.name for s in loader.load_instances(path)] == [f"m[images={label},variants=2]" for label in expected]
    assert [s.name for s in loader.load_instances(path)] == [f"m[images={label},variants=2]" for label in expected]


def test_matrix_labels_of_values_that_read_the_same_get_their_position(tmp_path: Path):
    path = write(tmp_path, 'name: m\nmatrix:\n  variants: [2, 3, 2]\n'
                           '  job_inputs: [{desc_kor: "1"}, {desc_kor: "1"}]\n')
    names = [s.name for s in loader.load_instances(path)]
    assert names == [f"m[variants={v},job_inputs={{desc_kor=1}}#{i}]" for v in ("2#1", "3", "2#3") for i in (1, 2)]
    assert len(set(names)) == len(names)


def test_values_written_to_read_alike_are_refused_at_matrix(tmp_path: Path):
    path = write(tmp_path, 'name: m\nmatrix:\n  description_kor: ["x,variants=2", x]\n'
                           '  variants: [1, "2,variants=1"]\n')
    with pytest.raises(ScenarioError) as caught:
        loader.load_instances(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:2:1: $.matrix: two instances would both be named [description_kor=x,variants=2,variants=1]; "
        "make their values differ"]

"""`ye-run validate` and `ye-run schema` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner import resources
from runner.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
INVALID = ROOT / "tests" / "scenario" / "invalid"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_shipped_directory_is_valid(runner: CliRunner):
    result = runner.invoke(cli, ["validate", str(ROOT / "scenarios")])
    assert result.exit_code == 0, result.output
    assert "smoke.yaml: ok" in result.stdout
    assert "_regression_base" not in result.stdout
    assert "0 invalid" in result.stderr


def test_invalid_file_prints_the_precise_line(runner: CliRunner, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(INVALID)
    result = runner.invoke(cli, ["validate", "unknown_step.yaml"])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "unknown_step.yaml:3:20: $.expect.steps[1]: unknown step 'vlm_analyse'; did you mean 'vlm_analyze'? (steps "
        "of the built-in pipeline definition; to use another: `pipeline_file: FILE` in the scenario, "
        "--pipeline-file FILE, or the project config)"
    ]


def test_mixed_files_exit_one_and_report_every_invalid_file(runner: CliRunner, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)
    result = runner.invoke(cli, ["validate", "scenarios/smoke.yaml", "tests/scenario/invalid/duplicate_key.yaml",
                                 "tests/scenario/invalid/negative_variants.yaml"])
    assert result.exit_code == 1
    assert "scenarios/smoke.yaml: ok" in result.stdout
    assert "duplicate_key.yaml:3:1: $.name: duplicate key" in result.stdout
    assert "negative_variants.yaml:2:11: $.variants: must be at least 1" in result.stdout
    assert "1 valid, 2 invalid" in result.stderr


def test_globs_expand(runner: CliRunner, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)
    result = runner.invoke(cli, ["validate", "-q", "scenarios/*_start.yaml"])
    assert result.exit_code == 0
    assert "2 valid, 0 invalid" in result.stderr


@pytest.mark.parametrize("args", [["validate"], ["validate", "no/such/file.yaml"], ["validate", "nomatch*.yaml"],
                                  ["validate", "--bogus", "x"]])
def test_usage_errors_exit_two(runner: CliRunner, args: list[str], tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output


def test_empty_directory_is_a_usage_error(runner: CliRunner, tmp_path: Path):
    result = runner.invoke(cli, ["validate", str(tmp_path)])
    assert result.exit_code == 2
    assert "no *.yaml" in result.stderr


def test_schema_command_prints_the_shipped_schema(runner: CliRunner):
    result = runner.invoke(cli, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == resources.schema("scenario.schema.json")
    pipeline = runner.invoke(cli, ["schema", "--pipeline"])
    assert json.loads(pipeline.stdout)["title"] == "ye-run reference pipeline configuration"


def test_mistyped_command_is_not_taken_for_a_scenario(runner: CliRunner):
    result = runner.invoke(cli, ["valdate"])
    assert result.exit_code == 2
    assert "No such command" in result.stderr

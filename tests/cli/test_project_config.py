"""The project config as a QA lead meets it: `ye-run run` with no arguments runs the night, `--dry-run` shows the
config and what the flags overrode, and one suite mixes scenarios written for different pipeline definitions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli.main import cli
from runner.db.connect import Database
from tests.test_definition import SCENARIO, TEAM

PLAIN = "name: plain\ntags: [nightly]\nsimulate_img_gen: true\ntenant: {id: ye_config_test, isolate: true}\n"
TEAM_SCENARIO = ("pipeline_file: ../pipelines/team.yaml\ntags: [nightly, custom]\n"
                 + SCENARIO.replace("name: team\n", "name: team\nmode: once\n"))
CONFIG = """\
paths = ["suite"]
tags = ["nightly"]
parallel = 2
database_url_env = "YE_T_NIGHTLY_URL"
json = "reports/night.json"
junit = "reports/night.xml"
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def project(tmp_path: Path, config: str = CONFIG) -> Path:
    """A repository: ye-run.toml, pipelines/team.yaml, suite/{plain,team,slow}.yaml, and a subdirectory to run in."""
    write(tmp_path / "ye-run.toml", config)
    write(tmp_path / "pipelines" / "team.yaml", TEAM)
    write(tmp_path / "suite" / "plain.yaml", PLAIN)
    write(tmp_path / "suite" / "team.yaml", TEAM_SCENARIO)
    write(tmp_path / "suite" / "slow.yaml", PLAIN.replace("plain", "slow").replace("nightly", "weekly"))
    (tmp_path / "docs").mkdir()
    return tmp_path


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args))


def test_dry_run_shows_the_config_and_what_the_flags_overrode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(project(tmp_path) / "docs")
    monkeypatch.setenv("YE_T_NIGHTLY_URL", "postgresql://qa:hunter2@127.0.0.1:1/night")
    result = invoke("run", "--dry-run", "-j", "1")
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    lines = result.stdout.splitlines()
    assert lines[:8] == [
        "project config: ../ye-run.toml",
        "  paths: ../suite",
        "  tags: nightly",
        "  parallel: 2 (overridden by -j/--parallel: 1)",
        "  database_url_env: YE_T_NIGHTLY_URL (set)",
        "  json: ../reports/night.json",
        "  junit: ../reports/night.xml",
        "  pipeline definition: the built-in one, for scenarios that name none",
    ]
    plans = [line for line in lines if line.startswith("scenario ")]
    assert plans == ["scenario plain (../suite/plain.yaml)", "scenario team (../suite/team.yaml)"]
    assert "  database:   postgresql+psycopg2://qa:***@127.0.0.1:1/night" in lines
    assert "  pipeline:   team pipeline (../pipelines/team.yaml, " in result.stdout


def test_an_unset_database_variable_is_located_in_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(project(tmp_path))
    monkeypatch.delenv("YE_T_NIGHTLY_URL", raising=False)
    monkeypatch.delenv("YE_DATABASE_URL", raising=False)
    result = invoke("run", "--dry-run")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("ye-run.toml:4:1: database_url_env: the environment variable YE_T_NIGHTLY_URL "
                                     "is not set; set it, or give --database-url")
    given = invoke("run", "--dry-run", "--database-url", "postgresql://qa@127.0.0.1:1/x")
    assert given.exit_code == 0, given.output
    assert "  database_url_env: YE_T_NIGHTLY_URL (overridden by --database-url)" in given.stdout


def test_list_and_validate_read_the_configs_paths_and_tags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(project(tmp_path))
    listed = invoke("list", "--json")
    assert listed.exit_code == 0, listed.output
    assert [s["name"] for s in json.loads(listed.stdout)["scenarios"]] == ["plain", "team"]
    weekly = invoke("list", "--json", "--tag", "weekly")
    assert [s["name"] for s in json.loads(weekly.stdout)["scenarios"]] == ["slow"]
    checked = invoke("validate")
    assert checked.exit_code == 0, checked.output
    assert "suite/team.yaml: ok (pipeline definition: pipelines/team.yaml)" in checked.stdout


def test_a_folder_of_the_config_names_its_definition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = project(tmp_path, CONFIG + '\n[pipelines]\n"suite/custom" = "pipelines/team.yaml"\n')
    write(root / "suite" / "custom" / "folder.yaml", "tags: [nightly]\n" + SCENARIO.replace("team", "by-folder"))
    monkeypatch.chdir(root)
    monkeypatch.setenv("YE_T_NIGHTLY_URL", "postgresql://qa@127.0.0.1:1/night")
    result = invoke("run", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "  pipeline definition: pipelines/team.yaml for suite/custom (ye-run.toml:9)" in result.stdout
    assert "  pipeline:   team pipeline (pipelines/team.yaml, " in result.stdout


def test_an_explicit_config_file_and_no_paths_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    nothing = invoke("run")
    assert nothing.exit_code == 2
    assert "give SCENARIO... or `paths` in the project config" in nothing.stderr
    project(tmp_path / "elsewhere")
    listed = invoke("list", "--config", str(tmp_path / "elsewhere" / "ye-run.toml"))
    assert listed.exit_code == 0, listed.output
    broken = write(tmp_path / "broken.toml", "paralel = 2\n")
    refused = invoke("validate", "--config", str(broken))
    assert refused.exit_code == 2
    assert refused.stderr.strip() == "broken.toml:1:1: paralel: unknown key 'paralel'; did you mean 'parallel'?"


def test_the_night_runs_both_definitions_in_one_session_with_the_configs_reports(
        db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = project(tmp_path)
    monkeypatch.chdir(root / "docs")
    monkeypatch.setenv("YE_T_NIGHTLY_URL", db.url.render_as_string(hide_password=False))
    result = invoke("run", "--reference-pipeline", "--asset-dir", str(tmp_path / "assets"))
    assert result.exit_code == 0, result.output
    doc = json.loads((root / "reports" / "night.json").read_text())
    assert {s["name"]: s["plan"]["definition"]["name"] for s in doc["scenarios"]} == {
        "plain": "deployment", "team": "team pipeline"}
    assert (root / "reports" / "night.xml").is_file()

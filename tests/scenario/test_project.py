"""The project config: found from the working directory up, every key read and checked, every problem located."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runner.errors import ExitCode, ScenarioError
from runner.scenario import project

ROOT = Path(__file__).resolve().parents[2]

FULL = """\
paths = ["suite", "more/*.yaml"]
pipeline_file = "pipelines/deployment.yaml"
database_url_env = "STAGING_DATABASE_URL"
parallel = 4
tags = ["nightly"]
skip_tags = ["slow"]
junit = "reports/junit.xml"
json = "reports/report.json"
html = "reports/report.html"

[pipelines]
"suite/custom" = "pipelines/custom.yaml"
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_the_config_is_found_from_the_working_directory_up(tmp_path: Path):
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert project.find(deep) is None
    write(tmp_path / "pyproject.toml", "[tool.ye-run]\nparallel = 2\n")
    write(tmp_path / "a" / "pyproject.toml", "[project]\nname = 'not ye-run'\n")
    assert project.find(deep) == tmp_path / "pyproject.toml"
    write(tmp_path / "a" / "ye-run.toml", "parallel = 3\n")
    assert project.find(deep) == tmp_path / "a" / "ye-run.toml"
    write(tmp_path / "a" / "b" / "pyproject.toml", "[tool.ye-run]\nparallel = 4\n")
    write(tmp_path / "a" / "b" / "ye-run.toml", "parallel = 5\n")
    assert project.find(deep) == deep / "ye-run.toml"


def test_every_key_is_read_and_paths_are_the_config_files_shown_from_the_working_directory(tmp_path: Path):
    file = write(tmp_path / "ye-run.toml", FULL)
    write(tmp_path / "pipelines" / "custom.yaml", "variant_steps: [a, b]\n")
    (tmp_path / "sub").mkdir()
    config = project.load(file, cwd=tmp_path / "sub")
    assert config.file == file and config.display == "../ye-run.toml"
    assert {s.key: s.value for s in config.settings} == {
        "paths": ("../suite", "../more/*.yaml"), "pipeline_file": "../pipelines/deployment.yaml",
        "database_url_env": "STAGING_DATABASE_URL", "parallel": 4, "tags": ("nightly",), "skip_tags": ("slow",),
        "junit": "../reports/junit.xml", "json": "../reports/report.json", "html": "../reports/report.html"}
    assert config.get("parallel").at == "../ye-run.toml:4"
    (folder,) = config.folders
    assert (folder.path, folder.definition, folder.at) == (Path("../suite/custom"), Path("../pipelines/custom.yaml"),
                                                           "../ye-run.toml:12")


def test_pyproject_holds_it_under_tool_ye_run(tmp_path: Path):
    write(tmp_path / "team.yaml", "variant_steps: [a, b]\n")
    file = write(tmp_path / "pyproject.toml", "[project]\nname = 'x'\n\n[tool.ye-run]\nparallel = 2\n\n"
                                              "[tool.ye-run.pipelines]\nsuite = 'team.yaml'\n")
    config = project.load(file, cwd=tmp_path)
    assert config.get("parallel").value == 2 and config.get("parallel").at == "pyproject.toml:5"
    assert config.folders[0].at == "pyproject.toml:8"


def test_no_config_is_an_empty_one(tmp_path: Path):
    config = project.discover(tmp_path)
    assert config.file is None and config.settings == () and config.folders == ()


@pytest.mark.parametrize("text, expected", [
    ("paralel = 4\n", "ye-run.toml:1:1: paralel: unknown key 'paralel'; did you mean 'parallel'?"),
    ("\n\nparallel = 'four'\n", "ye-run.toml:3:1: parallel: expected a whole number from 1 to 64, got 'four'"),
    ("parallel = 0\n", "ye-run.toml:1:1: parallel: expected a whole number from 1 to 64, got 0"),
    ("parallel = true\n", "ye-run.toml:1:1: parallel: expected a whole number from 1 to 64, got true"),
    ("tags = 'nightly'\n", "ye-run.toml:1:1: tags: expected a list of strings, got 'nightly'"),
    ("paths = []\n", "ye-run.toml:1:1: paths: expected a list of strings, got an empty list"),
    ("junit = 3\n", "ye-run.toml:1:1: junit: expected a string (a file path), got 3"),
    ("database_url = 'postgresql://qa:hunter2@db/x'\n",
     "ye-run.toml:1:1: database_url: unknown key 'database_url': the project config names the environment variable "
     "holding the URL (database_url_env = \"NAME\"), so no password is written into the repository"),
    ("database_url_env = 'postgresql://qa:hunter2@db/x'\n",
     "ye-run.toml:1:1: database_url_env: expected the NAME of an environment variable holding the database URL "
     "(letters, digits and _), never the URL itself"),
    ("pipelines = 'team.yaml'\n", "ye-run.toml:1:1: pipelines: expected a table of folder = \"definition file\""),
    ("[pipelines]\nsuite = 3\n", "ye-run.toml:2:1: pipelines.suite: expected a string (a file path), got 3"),
    ("[pipelines]\nsuite = 'none.yaml'\n",
     "ye-run.toml:2:1: pipelines.suite: pipeline definition file not found: none.yaml"),
    ("parallel = \n", "ye-run.toml:1:12: $: invalid TOML: Invalid value"),
    ("parallel = 2\nparallel = 3\n", "ye-run.toml:2:13: $: invalid TOML: Cannot overwrite a value"),
])
def test_every_problem_is_located_and_exit_2(tmp_path: Path, text: str, expected: str):
    file = write(tmp_path / "ye-run.toml", text)
    with pytest.raises(ScenarioError) as caught:
        project.load(file, cwd=tmp_path)
    assert [str(p) for p in caught.value.problems] == [expected]
    assert caught.value.exit_code == ExitCode.BAD_INPUT
    assert "hunter2" not in str(caught.value)


def test_every_problem_at_once_and_in_pyproject_under_its_table(tmp_path: Path):
    file = write(tmp_path / "pyproject.toml", "[tool.ye-run]\nparalel = 4\ntags = 'x'\n")
    with pytest.raises(ScenarioError) as caught:
        project.load(file, cwd=tmp_path)
    assert [str(p) for p in caught.value.problems] == [
        "pyproject.toml:2:1: tool.ye-run.paralel: unknown key 'paralel'; did you mean 'parallel'?",
        "pyproject.toml:3:1: tool.ye-run.tags: expected a list of strings, got 'x'"]


@pytest.mark.parametrize("content", [b"\xff\xfe bad", b"x" * (project.MAX_BYTES + 1)])
def test_an_unreadable_config_is_an_input_error_not_a_bug(tmp_path: Path, content: bytes):
    file = tmp_path / "ye-run.toml"
    file.write_bytes(content)
    with pytest.raises(ScenarioError) as caught:
        project.load(file, cwd=tmp_path)
    assert str(caught.value).startswith("ye-run.toml:1:1: $: ")


def test_the_docs_describe_every_key():
    text = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    keys = [*project.KEYS, "pipelines"]
    assert [k for k in keys if not re.search(rf"^### `{k}`", text, re.M)] == []

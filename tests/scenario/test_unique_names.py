"""Scenario names are unique in a selection: reports (JUnit suites, HTML anchors, compare) tell scenarios apart
by name, so two of the same name would merge or hide each other. Refused at load time, naming both places."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli.main import cli
from runner.errors import ScenarioError
from runner.scenario import loader, select
from runner.scenario.select import Selection


def files(tmp_path: Path, **texts: str) -> list[Path]:
    paths = []
    for name, text in texts.items():
        path = tmp_path / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def load(*paths: Path) -> list:  # type: ignore[type-arg]
    return [s for p in paths for s in loader.load_instances(p)]


def test_two_files_of_the_same_name_are_one_problem_naming_both(tmp_path: Path):
    a, b = files(tmp_path, a="name: same\ntags: [x]\n", b="tags: [x]\nname: same\n")
    with pytest.raises(ScenarioError) as caught:
        select.select(load(a, b), Selection())
    assert [str(p) for p in caught.value.problems] == [
        f"{b}:2:7: $.name: scenario name 'same' is also the name of {a}:1:7; names must be unique in a "
        "selection (reports tell scenarios apart by name)"]


def test_names_taken_from_the_file_name_count_too(tmp_path: Path):
    a, b = files(tmp_path, **{"one/smoke": "variants: 2\n", "two/smoke": "variants: 3\n"})
    with pytest.raises(ScenarioError) as caught:
        select.select(load(a, b), Selection())
    assert [str(p) for p in caught.value.problems] == [
        f"{b}:1:1: $.name: scenario name 'smoke' (the file's name) is also the name of {a}:1:1 (the file's "
        "name); names must be unique in a selection (reports tell scenarios apart by name)"]


def test_a_name_from_an_extended_file_says_which_file_extends_it(tmp_path: Path):
    base, a, b = files(tmp_path, _base="name: shared\nvariants: 2\n", a="extends: _base.yaml\n",
                       b="extends: _base.yaml\nvariants: 4\n")
    with pytest.raises(ScenarioError) as caught:
        select.select(load(a, b), Selection())
    assert [str(p) for p in caught.value.problems] == [
        f"{base}:1:7: $.name: scenario name 'shared' (of {b}) is also the name of {base}:1:7 (of {a}); names must "
        "be unique in a selection (reports tell scenarios apart by name)"]


def test_a_deselected_duplicate_does_not_count_but_sharding_does_not_hide_one(tmp_path: Path):
    a, b, c = files(tmp_path, a="name: same\ntags: [x]\n", b="name: same\ntags: [y]\n", c="name: other\n")
    loaded = load(a, b, c)
    assert [s.name for s in select.select(loaded, Selection(tags=("x",)))] == ["same"]
    assert [s.name for s in select.select(loaded, Selection(keyword="other"))] == ["other"]
    for k in (1, 2, 3):
        with pytest.raises(ScenarioError, match="scenario name 'same' is also the name of"):
            select.select(loaded, Selection(shard=(k, 3)))


@pytest.mark.parametrize("command, code", [(["list"], 2), (["run", "--dry-run"], 2), (["validate"], 1)])
def test_every_command_refuses_duplicate_names_in_one_line(tmp_path: Path, command: list[str], code: int):
    a, b = files(tmp_path, a="name: same\n", b="name: same\n")
    result = CliRunner().invoke(cli, [*command, str(a), str(b)])
    assert result.exit_code == code, result.output
    problem = (f"{b}:1:7: $.name: scenario name 'same' is also the name of {a}:1:7; names must be unique in a "
               "selection (reports tell scenarios apart by name)")
    lines = [line for line in result.output.splitlines() if not line.endswith(" valid, 1 invalid")
             and line != f"{a}: ok"]
    assert lines == [problem]


def test_validate_counts_the_second_file_invalid(tmp_path: Path):
    a, b, c = files(tmp_path, a="name: same\n", b="name: same\n", c="name: fine\n")
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == f"{a}: ok" and f"{c}: ok" in result.stdout
    assert f"{b}: ok" not in result.stdout
    assert result.stderr.strip() == "2 valid, 1 invalid"


def test_the_same_file_given_twice_is_refused(tmp_path: Path):
    (a,) = files(tmp_path, a="name: once\n")
    result = CliRunner().invoke(cli, ["list", str(a), f"{tmp_path}/./a.yaml"])
    assert result.exit_code == 2 and "scenario name 'once' is also the name of" in result.stderr


def test_run_writes_the_refusal_into_the_reports_asked_for(tmp_path: Path):
    a, b = files(tmp_path, a="name: same\n", b="name: same\n")
    junit = tmp_path / "junit.xml"
    unreachable = "postgresql://nobody@127.0.0.1:1/none"  # were the names let through, nothing would run
    result = CliRunner().invoke(cli, ["run", str(a), str(b), "--junit", str(junit), "--database-url", unreachable])
    assert result.exit_code == 2
    assert "scenario name 'same' is also the name of" in junit.read_text(encoding="utf-8")

"""Loading and selection as every front end meets them: what refuses a suite is its error, not an exception."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from runner.errors import ExitCode, InputError, Interrupted, ScenarioError
from runner.scenario import suite

GOOD = "name: {name}\ntenant: {{id: ye_suite_test}}\ntags: [{tag}]\nsimulate_img_gen: true\n"
LITERAL = "fixtures: [{table: tone_styles, rows: [{tone_style_id: ye_suite_tone, name: calm}]}]\n"


def files(tmp_path: Path, **texts: str) -> tuple[str, ...]:
    for name, text in texts.items():
        (tmp_path / f"{name}.yaml").write_text(text, encoding="utf-8")
    return (str(tmp_path),)


def test_a_request_selects_its_scenarios_and_counts_what_the_files_held(tmp_path: Path):
    paths = files(tmp_path, a=GOOD.format(name="a", tag="smoke"), b=GOOD.format(name="b", tag="nightly"))
    chosen = suite.suite(suite.Request(paths, tags=("smoke",)))
    assert chosen.error is None and [s.name for s in chosen.scenarios] == ["a"] and chosen.loaded == 2


def test_every_problem_of_every_file_is_the_suites_error_and_an_unselected_invalid_file_counts(tmp_path: Path):
    paths = files(tmp_path, a=GOOD.format(name="a", tag="smoke"), bad="name: bad\nvariants: lots\n",
                  worse="name: worse\nvariants: -1\n")
    refused = suite.suite(suite.Request(paths, tags=("smoke",)))
    assert refused.scenarios == () and isinstance(refused.error, ScenarioError)
    assert [(Path(p.file).name, p.path) for p in refused.error.problems] == [("bad.yaml", "$.variants"),
                                                                             ("worse.yaml", "$.variants")]


@pytest.mark.parametrize("request_, message", [
    (suite.Request((), tags=("none",)), "no scenario selected out of 1"),
    (suite.Request((), variables=("1=x",)), "--var '1=x': write NAME=VALUE"),
    (suite.Request((), shard="3/2"), "--shard '3/2'"),
])
def test_a_refused_selection_is_the_suites_error(tmp_path: Path, request_: suite.Request, message: str):
    paths = files(tmp_path, a=GOOD.format(name="a", tag="smoke"))
    refused = suite.suite(dataclasses.replace(request_, paths=paths))
    assert isinstance(refused.error, InputError) and message in str(refused.error)
    assert refused.error.exit_code == ExitCode.BAD_INPUT


def test_side_by_side_two_scenarios_seeding_one_literal_row_are_refused_one_at_a_time_not(tmp_path: Path):
    paths = files(tmp_path, a=GOOD.format(name="a", tag="x") + LITERAL, b=GOOD.format(name="b", tag="x") + LITERAL)
    serial = suite.suite(suite.Request(paths))
    assert serial.error is None and len(serial.scenarios) == 2
    parallel = suite.suite(suite.Request(paths, side_by_side=True))
    assert parallel.scenarios == () and isinstance(parallel.error, InputError)
    assert str(parallel.error).startswith(f"{tmp_path}/b.yaml:")
    assert "a tone_styles row with no ${...} placeholder is also seeded by scenario 'a'" in str(parallel.error)
    (clash,) = suite.isolation_clashes(serial.scenarios)
    assert clash[0].name == "b"


def test_an_interrupt_while_loading_is_a_suite_of_its_own():
    interrupted = suite.interrupted()
    assert isinstance(interrupted.error, Interrupted) and interrupted.error.exit_code == ExitCode.INTERRUPTED
    assert str(interrupted.error) == "interrupted before the run started (nothing was seeded)"


def test_the_loader_reads_file_by_file_and_refuses_a_name_met_before(tmp_path: Path):
    files(tmp_path, a=GOOD.format(name="same", tag="x"), b=GOOD.format(name="same", tag="y"))
    reader = suite.Loader()
    assert [s.name for s in reader.unique(tmp_path / "a.yaml")] == ["same"]
    with pytest.raises(ScenarioError, match=r"b\.yaml:1:7: \$\.name: scenario name 'same' is also the name of"):
        reader.unique(tmp_path / "b.yaml")
    assert [s.name for s in reader.instances(tmp_path / "b.yaml")] == ["same"]

"""Selection and sharding: tags, -k expressions, and disjoint shards whose union is the suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import InputError
from runner.scenario import discover, loader, select
from runner.scenario.select import Selection

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [loader.load(p) for p in discover.scenario_files([str(ROOT / "scenarios")])]


def names(selection: Selection) -> list[str]:
    return [s.name for s in select.select(SHIPPED, selection)]


def test_tags_select_any_and_skip_tags_leave_out():
    assert names(Selection(tags=("smoke",))) == ["smoke"]
    assert "smoke" not in names(Selection(skip_tags=("smoke",)))
    assert len(names(Selection(tags=("smoke", "regression")))) == len(SHIPPED)
    assert names(Selection(tags=("nightly",))) == []


@pytest.mark.parametrize("expression, expected", [
    ("smoke", ["smoke"]),
    ("SMOKE", ["smoke"]),
    ("retry or smoke", ["overlay-retry", "smoke"]),
    ("start and not yh", ["ye-start"]),
    ("not (start or retry or variants or image or sql or interval or pipeline or failure or completion)",
     ["smoke"]),
])
def test_keyword_expressions_match_names(expression: str, expected: list[str]):
    assert sorted(names(Selection(keyword=expression))) == expected


@pytest.mark.parametrize("expression", ["", "smoke and", "(smoke", "smoke )", "or smoke", "not"])
def test_a_broken_keyword_expression_is_bad_input(expression: str):
    with pytest.raises(InputError, match="-k"):
        select.keyword_matcher(expression) if expression else select.keyword_matcher("and")


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 12])
def test_shards_are_disjoint_and_their_union_is_the_selection(n: int):
    shards = [names(Selection(shard=(k, n))) for k in range(1, n + 1)]
    flat = [name for shard in shards for name in shard]
    assert sorted(flat) == sorted(s.name for s in SHIPPED) and len(flat) == len(set(flat))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert shards == [names(Selection(shard=(k, n))) for k in range(1, n + 1)]  # deterministic


def test_sharding_applies_after_selection():
    regression = names(Selection(tags=("regression",)))
    halves = [names(Selection(tags=("regression",), shard=(k, 2))) for k in (1, 2)]
    assert sorted(halves[0] + halves[1]) == sorted(regression)


@pytest.mark.parametrize("text", ["0/3", "4/3", "a/b", "1", "1/0", "-1/2"])
def test_a_bad_shard_is_bad_input(text: str):
    with pytest.raises(InputError, match="--shard"):
        select.parse_shard(text)


@pytest.mark.parametrize("expression", ["(" * 2000 + "smoke" + ")" * 2000, "not " * 5000 + "smoke",
                                        "(not " * 60 + "smoke" + ")" * 60])
def test_a_deeply_nested_keyword_expression_is_bad_input_not_a_crash(expression: str):
    with pytest.raises(InputError, match=r"^-k expression nested deeper than 100 levels"):
        select.keyword_matcher(expression)


def test_nesting_up_to_the_bound_still_matches():
    assert select.keyword_matcher("(" * 100 + "smoke" + ")" * 100)("smoke")
    assert select.keyword_matcher("not " * 100 + "smoke")("smoke")
    assert not select.keyword_matcher("not " * 99 + "smoke")("smoke")


def test_a_long_flat_expression_is_not_nested():
    """5,000 words joined by `or` / `and` are one level deep: neither parsing nor matching recurses per word."""
    assert select.keyword_matcher(" or ".join(f"w{i}" for i in range(5000)) + " or smoke")("smoke")
    assert not select.keyword_matcher(" and ".join(["smo"] * 5000) + " and nope")("smoke")


@pytest.mark.parametrize("expression", ["(" * 2000 + "smoke" + ")" * 2000, "not " * 5000 + "smoke"])
def test_the_cli_refuses_a_deeply_nested_keyword_in_one_line(expression: str):
    from click.testing import CliRunner

    from runner.cli.main import cli

    result = CliRunner().invoke(cli, ["list", str(ROOT / "scenarios"), "-k", expression])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "ye-run: error: -k expression nested deeper than 100 levels (parentheses and 'not')"]


def test_shards_by_duration_put_the_longest_alone_and_stay_disjoint():
    """Nine shipped scenarios or so, one known to take 100 s and the rest 1 s: the long one is a shard of its own
    where a split by count would have given it company; the parts are disjoint and cover the selection."""
    longest = SHIPPED[-1].name
    durations = {s.name: 1.0 for s in SHIPPED} | {longest: 100.0}
    shards = [[s.name for s in select.balanced(SHIPPED, k, 3, durations)] for k in (1, 2, 3)]
    assert shards[0] == [longest]
    assert sorted(n for shard in shards for n in shard) == sorted(s.name for s in SHIPPED)
    assert shards == [[s.name for s in select.balanced(SHIPPED, k, 3, dict(durations))] for k in (1, 2, 3)]
    assert any(longest in [s.name for s in select.shard(SHIPPED, k, 3)] and len(select.shard(SHIPPED, k, 3)) > 1
               for k in (1, 2, 3))


def test_a_scenario_with_no_past_duration_counts_as_the_median_and_none_known_is_by_count():
    durations = {SHIPPED[0].name: 30.0, SHIPPED[1].name: 10.0, SHIPPED[2].name: 20.0}
    loads = [sum(durations.get(s.name, 20.0) for s in part) for part in select.partition(SHIPPED, 2, durations)]
    assert abs(loads[0] - loads[1]) <= 30.0
    assert [select.balanced(SHIPPED, k, 4, {}) for k in range(1, 5)] == [select.shard(SHIPPED, k, 4)
                                                                        for k in range(1, 5)]

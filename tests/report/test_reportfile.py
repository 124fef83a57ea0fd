"""A saved JSON report read back: anything that is not one ye-run wrote is exit 2 naming the file, never a bug."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli.main import cli
from runner.engine.results import Outcome
from runner.errors import InputError
from runner.report import json_report, reportfile
from tests.report.test_json import traced
from tests.report.test_junit import NOW, job, scenario


def valid() -> dict:
    """A report as `ye-run run --json` writes it: two traced jobs of one passing scenario."""
    doc = json_report.document([scenario("nightly", Outcome.PASSED, [traced(1), traced(2)])], 0, NOW, NOW)
    return json.loads(json.dumps(doc))


def trace(doc: dict) -> list[dict]:
    return doc["scenarios"][0]["jobs"][0]["variants"][0]["trace"]


def edited(change: Callable[[dict], None]) -> str:
    doc = valid()
    change(doc)
    return json.dumps(doc)


def set_in(getter: Callable[[dict], dict], key: str, value: object) -> Callable[[dict], None]:
    return lambda doc: getter(doc).__setitem__(key, value)


def plan(doc: dict) -> dict:
    return doc["scenarios"][0]["plan"]


CORRUPT = {
    "infinity": (edited(set_in(lambda d: trace(d)[3], "since_seed", float("inf"))), "Infinity"),
    "nan": (edited(set_in(lambda d: trace(d)[3], "since_seed", float("nan"))), "NaN"),
    "overflowing float": (edited(set_in(lambda d: trace(d)[3], "since_seed", 1.5)).replace("1.5", "1e400"), "1e400"),
    "huge int": (edited(set_in(lambda d: d["scenarios"][0], "duration", 7)).replace(
        '"duration": 7', '"duration": ' + "9" * 5000), "$"),
    "garbage time": (edited(set_in(lambda d: trace(d)[3], "db_time", "garbage")), "db_time"),
    "time without offset": (edited(set_in(lambda d: trace(d)[3], "db_time", "2026-11-28T00:00:03")), "db_time"),
    "deep arrays": ("[" * 100_000 + "]" * 100_000, "deeper than"),
    "deep objects": ('{"a":' * 100_000 + "1" + "}" * 100_000, "deeper than"),
    "deep inside a valid report": (edited(set_in(plan, "anything", "X")).replace('"X"', "[" * 5000 + "]" * 5000),
                                   "deeper than"),
    "tags that are not names": (edited(set_in(plan, "tags", [1, "a"])), "$.scenarios[0].plan.tags[0]"),
    "a latency limit of no known kind": (edited(set_in(plan, "latency_limits", {"planner": {"p42": 1}})),
                                         "$.scenarios[0].plan.latency_limits.planner"),
    "steps that are not a list": (edited(set_in(plan, "expected_steps", "planner")),
                                  "$.scenarios[0].plan.expected_steps"),
    "a hidden infinity": ('{"format": Infinity, "format": 1}', "Infinity"),
    "not utf-8": ('{"format": "\udcff"}', "$"),
    "not json": ("{'format': 1}", "$"),
}


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.json"
    path.write_text(json.dumps(valid()), encoding="utf-8")
    return path


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    return path


@pytest.mark.parametrize("case", list(CORRUPT))
def test_a_corrupt_report_is_bad_input_naming_the_file_for_every_reader(case: str, tmp_path: Path, good: Path):
    text, where = CORRUPT[case]
    path = write(tmp_path, text)
    for args in (["report", str(path), "--html", str(tmp_path / "page.html")], ["compare", str(good), str(path)],
                 ["compare", str(path), str(good), "--html", str(tmp_path / "compare.html")]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, (args, result.output)
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"ye-run: error: {path}: ") and where in line, line
        assert "internal error" not in result.output
    with pytest.raises(InputError, match=str(path)):
        reportfile.load(path)


def test_the_json_path_of_an_out_of_range_number_is_named(tmp_path: Path):
    path = write(tmp_path, CORRUPT["infinity"][0])
    with pytest.raises(InputError) as raised:
        reportfile.load(path)
    assert str(raised.value) == (f"{path}: $.scenarios[0].jobs[0].variants[0].trace[3].since_seed: not a ye-run JSON "
                                 f"report (Infinity: a report's numbers are finite and below 1e+20 in magnitude)")


@pytest.mark.parametrize("case", ["infinity", "deep arrays", "deep objects", "huge int", "not json"])
def test_any_json_is_read_within_the_same_bounds(case: str, tmp_path: Path):
    """`cleanup --report` takes a bare run record too: the bounds hold without the report schema."""
    path = write(tmp_path, CORRUPT[case][0])
    with pytest.raises(InputError, match=f"^{path}: "):
        reportfile.read_json(path)


def test_a_crafted_key_is_quoted_in_the_one_line(tmp_path: Path):
    doc = valid()
    doc["scenarios"][0]["latency"] = {"\x1b[2J\nplanner": {"n": "many"}}
    path = write(tmp_path, json.dumps(doc))
    with pytest.raises(InputError) as raised:
        reportfile.load(path)
    assert str(raised.value).startswith(f'{path}: $.scenarios[0].latency["\\u001b[2J\\nplanner"].n: not a ye-run JSON')
    assert "\n" not in str(raised.value) and "\x1b" not in str(raised.value)


def test_a_report_ye_run_wrote_reads_back_whole(good: Path):
    written = json.loads(good.read_text())
    assert reportfile.load(good) == written and reportfile.read_json(good) == written


def test_nesting_is_counted_outside_strings_only(tmp_path: Path):
    doc = valid()
    doc["scenarios"][0]["error"] = "[" * 500 + "\\\"{" * 100
    path = write(tmp_path, json.dumps(doc))
    assert reportfile.load(path)["scenarios"][0]["error"] == doc["scenarios"][0]["error"]


def test_failures_read_back_with_their_origin_and_without_one_from_an_older_report(tmp_path: Path):
    from runner.scenario.model import Origin
    from runner.trace import Failure

    placed = Failure("skipped_step", "skipped planner", origin=Origin("smoke.yaml", 12, 3),
                     expectation="$.expect.steps")
    doc = json.loads(json.dumps(json_report.document(
        [scenario("nightly", Outcome.FAILED, [job(1, "failed", [placed])])], 1, NOW, NOW)))
    (failure,) = doc["scenarios"][0]["jobs"][0]["failures"]
    assert failure["origin"] == {"file": "smoke.yaml", "line": 12, "col": 3, "path": "$.expect.steps"}
    assert reportfile.load(write(tmp_path, json.dumps(doc))) == doc
    del failure["origin"]  # written before failures were placed
    assert reportfile.load(write(tmp_path, json.dumps(doc))) == doc
    failure["kind"] = "no_such_kind"
    with pytest.raises(InputError, match=r"\$\.scenarios\[0\]\.jobs\[0\]\.failures\[0\]\.kind"):
        reportfile.load(write(tmp_path, json.dumps(doc)))

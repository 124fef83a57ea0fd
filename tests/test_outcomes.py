"""Outcomes are ordered; failure kinds are declared once, each emitted by the engine and proven by a test."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from runner import resources
from runner.engine.results import JobResult, ScenarioResult
from runner.outcomes import FailureKind, Outcome
from tests.report.test_junit import job

ROOT = Path(__file__).resolve().parents[1]


def test_the_worst_outcome_is_the_max():
    assert max(Outcome.PASSED, Outcome.FAILED, Outcome.INTERRUPTED) is Outcome.INTERRUPTED
    assert max(Outcome.SEEDED, Outcome.PASSED) is Outcome.SEEDED
    assert max(list(Outcome)) is Outcome.ERROR and min(list(Outcome)) is Outcome.PASSED
    assert sorted([Outcome.ERROR, Outcome.NOT_RUN, Outcome.FAILED, Outcome.RUNNING]) == [
        Outcome.NOT_RUN, Outcome.RUNNING, Outcome.FAILED, Outcome.ERROR]
    assert Outcome.FAILED > "passed" and not Outcome.ERROR < "interrupted"  # a string is read as the outcome it names


def test_outcomes_are_written_as_the_strings_reports_have_always_held():
    assert json.dumps([Outcome.NOT_RUN, Outcome.PASSED]) == '["not_run", "passed"]'
    assert [o.value for o in Outcome] == ["passed", "seeded", "not_run", "running", "failed", "interrupted", "error",
                                          "flaky"]


def test_flaky_is_worse_than_a_pass_and_passes_in_the_end():
    assert max(Outcome.PASSED, Outcome.FLAKY) is Outcome.FLAKY and max(Outcome.FLAKY, Outcome.FAILED) is Outcome.FAILED
    assert Outcome.FLAKY.passing


def test_a_result_holds_an_outcome_whoever_sets_it():
    result = job(1, "failed")
    assert type(result.outcome) is Outcome and result.outcome is Outcome.FAILED
    scenario = ScenarioResult("s", "s.yaml", "run", outcome="not_run")  # type: ignore[arg-type]
    assert scenario.outcome is Outcome.NOT_RUN
    assert JobResult(result.seeded, result.seeded_at, 0.0, {}).outcome is Outcome.RUNNING
    with pytest.raises(ValueError):
        scenario.outcome = "passd"  # type: ignore[assignment]


def _emitted() -> set[str]:
    """Every `FailureKind.X` the package refers to, outside the enum's own module."""
    names = set()
    for path in (ROOT / "runner").rglob("*.py"):
        if path.name == "outcomes.py" and path.parent.name == "runner":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "FailureKind":
                names.add(node.attr)
    return names


def test_every_kind_is_emitted_by_the_package():
    assert sorted(k.name for k in FailureKind if k.name not in _emitted()) == []


ASSERTS, FAULTS, CHECKS = "tests/engine/test_asserts.py", "tests/engine/test_faults.py", "tests/engine/test_checks.py"
PROVEN_BY = {
    FailureKind.SKIPPED_STEP: ASSERTS + "::test_skipped_step",
    FailureKind.OUT_OF_ORDER: ASSERTS + "::test_out_of_order_is_one_failure_not_a_skip_and_a_backwards",
    FailureKind.BACKWARDS: ASSERTS + "::test_backwards",
    FailureKind.UNKNOWN_STEP: CHECKS + "::test_unknown_step_written_by_the_pipeline",
    FailureKind.UNKNOWN_STATUS: ASSERTS + "::test_unknown_step_and_status",
    FailureKind.DUPLICATE_TERMINAL: ASSERTS + "::test_duplicate_terminal_but_not_duplicate_running",
    FailureKind.INCOMPLETE_STEP: ASSERTS + "::test_incomplete_step",
    FailureKind.UNEXPECTED_STEP: ASSERTS + "::test_partial_pipeline_and_going_past_it",
    FailureKind.UNEXPECTED_FAILURE: ASSERTS + "::test_unexpected_failure_and_declared_failure",
    FailureKind.RETRY_LIMIT: ASSERTS + "::test_retries_within_and_beyond_the_limit",
    FailureKind.RETRIES_BELOW_MINIMUM:
        "tests/engine/test_authoring.py::test_a_retry_range_passes_when_the_retry_happens_and_fails_when_it_does_not",
    FailureKind.FINAL_STATE: ASSERTS + "::test_a_wrong_final_state_is_a_final_state_failure_at_the_step_it_ended",
    FailureKind.EXPECTED_FAILURE_MISSING: FAULTS + "::test_required_failure_that_does_not_happen_fails",
    FailureKind.STEP_TIMEOUT: FAULTS + "::test_hang_times_out_on_time",
    FailureKind.STALL_TIMEOUT: FAULTS + "::test_stall_is_caught_when_only_the_sweep_would_move_on",
    FailureKind.JOB_TIMEOUT: FAULTS + "::test_job_timeout_names_the_unfinished_variants",
    FailureKind.JOB_FINAL_STATE: CHECKS + "::test_job_row_that_never_completes",
    FailureKind.VARIANT_COUNT: CHECKS + "::test_extra_variant_and_lost_asset_are_caught",
    FailureKind.SHARED_ASSET: CHECKS + "::test_extra_variant_and_lost_asset_are_caught",
    FailureKind.SQL_CHECK: "tests/engine/test_origins.py::test_a_failure_points_at_the_expectation_it_broke",
    FailureKind.DETECTION_MISSING:
        "tests/engine/test_authoring.py::test_a_declared_detection_passes_only_when_exactly_it_happens",
    FailureKind.LATENCY_LIMIT: CHECKS + "::test_latency_limits",
}
"""Each kind, and a test that provokes it and asserts its name."""


@pytest.mark.parametrize("kind", list(FailureKind), ids=[k.value for k in FailureKind])
def test_every_kind_is_provoked_by_a_test_that_names_it(kind: FailureKind):
    file, name = PROVEN_BY[kind].split("::")
    source = (ROOT / file).read_text(encoding="utf-8")
    found = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef) and n.name == name]
    assert found, f"{PROVEN_BY[kind]} does not exist"
    assert re.search(rf"\b{kind.value}\b", ast.get_source_segment(source, found[0]) or ""), \
        f"{PROVEN_BY[kind]} never names {kind.value}"


def test_the_schemas_lists_are_the_enum():
    scenario = resources.schema("scenario.schema.json")
    detect = scenario["properties"]["expect"]["properties"]["detect"]["items"]["properties"]["kind"]["enum"]
    assert detect == [k.value for k in FailureKind if k.detectable]
    failure = resources.schema("report.schema.json")["properties"]["scenarios"]["items"]["properties"]["failures"]
    assert failure["items"]["properties"]["kind"]["enum"] == [k.value for k in FailureKind]


def test_the_docs_list_every_kind_with_its_expectation():
    text = (ROOT / "docs" / "scenario-format.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z_]+)` \| `(\$[^`]*)` \| (yes|no) \|", text, re.M)
    assert rows == [(k.value, k.expectation, "yes" if k.detectable else "no") for k in FailureKind]


@pytest.mark.parametrize("kind,step,written,path", [
    (FailureKind.SKIPPED_STEP, "planner", set(), "$.expect.steps"),
    (FailureKind.RETRY_LIMIT, "overlay", {"$.expect.retries.overlay"}, "$.expect.retries.overlay"),
    (FailureKind.RETRY_LIMIT, "overlay", {"$.expect.retries"}, "$.expect.retries"),
    (FailureKind.STEP_TIMEOUT, "planner", {"$.timeouts.steps.planner", "$.timeouts.step"}, "$.timeouts.steps.planner"),
    (FailureKind.STEP_TIMEOUT, "planner", {"$.timeouts.step"}, "$.timeouts.step"),
    (FailureKind.STEP_TIMEOUT, None, set(), "$.timeouts.step"),
    (FailureKind.LATENCY_LIMIT, "planner", {"$.expect.latency.planner"}, "$.expect.latency.planner"),
])
def test_a_kind_names_the_path_of_what_it_broke(kind: FailureKind, step: str | None, written: set[str], path: str):
    assert kind.path(step, written) == path

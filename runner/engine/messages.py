"""Failure messages: who, where, expected vs observed, time vs limit."""

from __future__ import annotations

import difflib
from dataclasses import replace

from runner.durations import format_seconds
from runner.definition import Definition
from runner.engine.asserts import Problem
from runner.outcomes import FailureKind
from runner.trace import Failure, Transition
from runner.scenario.model import Expectations, Scenario


def ideal_states(expect: Expectations, creation_order: int, start: str,
                 definition: Definition) -> list[tuple[str, str]]:
    """The trace a row should leave: what each expected step writes (failed where a failure is declared)."""
    states = [(start, "done")]
    for step in expect.steps:
        writes = definition.writes(step) if definition.has(step) else ("running", "done")
        failure = expect.failure_for(step, creation_order)
        if failure is not None and failure.required:
            return states + [(step, status) for status in writes[:-1]] + [(step, "failed")]
        states += [(step, status) for status in writes]
    return states


def diff(expected: list[tuple[str, str]], observed: list[Transition], origin: float) -> str:
    """An ndiff of the expected and observed states; observed lines carry their time since seeding."""
    times = {}
    observed_lines = []
    for t in observed:
        line = f"{t.step} {t.status}"
        observed_lines.append(line)
        times.setdefault(len(observed_lines) - 1, t.seen_mono - origin)
    expected_lines = [f"{s} {st}" for s, st in expected]
    out = ["  expected (-) vs observed (+):"]
    index = 0
    for line in difflib.ndiff(expected_lines, observed_lines):
        tag, text = line[:2], line[2:]
        if tag == "? ":
            continue
        suffix = ""
        if tag in ("  ", "+ "):
            suffix = f"  (+{format_seconds(times.get(index, 0.0))})"
            index += 1
        out.append(f"    {tag}{text}{suffix}")
    return "\n".join(out)


def variant_failure(scenario: str, job_ordinal: int, job_id: str, creation_order: int, variant_id: str,
                    problem: Problem, detail: str, spent: float | None, limit: float | None,
                    seen_mono: float | None = None) -> Failure:
    """A failure of one row's lane: a variant's (creation_order >= 1), or the job row's (0)."""
    row = f"variant #{creation_order} ({variant_id})" if creation_order else "job row"
    where = f"{scenario} › job {job_ordinal} ({job_id}) › {row}"
    step = f" › {problem.step}" if problem.step else ""
    timing = _timing(problem.step, spent, limit)
    return Failure(problem.kind, f"{where}{step}: {problem.what}", "\n".join(x for x in (timing, detail) if x),
                   job_ordinal, job_id, creation_order or None, variant_id if creation_order else None,
                   problem.step, spent, limit, seen_mono)


def job_failure(scenario: str, job_ordinal: int, job_id: str, kind: FailureKind, what: str, detail: str = "",
                step: str | None = None, spent: float | None = None, limit: float | None = None) -> Failure:
    where = f"{scenario} › job {job_ordinal} ({job_id})"
    timing = _timing(step, spent, limit)
    return Failure(kind, f"{where}: {what}", "\n".join(x for x in (timing, detail) if x), job_ordinal, job_id,
                   step=step, spent=spent, limit=limit)


def located(failure: Failure, scenario: Scenario) -> Failure:
    """The failure with the place of what it broke: the path its maker gave, else its kind's expectation (the step's
    own entry where the scenario wrote one), at the line that wrote it or its nearest written ancestor."""
    if failure.origin is not None:
        return failure
    path = failure.expectation or failure.kind.path(failure.step, scenario.source.marks)
    return replace(failure, origin=scenario.origin(path), expectation=path)


def _timing(step: str | None, spent: float | None, limit: float | None) -> str:
    if spent is None:
        return ""
    at = f" at {step}" if step else ""
    bound = f" (limit {format_seconds(limit)})" if limit is not None else ""
    return f"  time{at}: {format_seconds(spent)}{bound}"

"""Cross-field checks of what a scenario measures: latency limits in order, and SQL checks that are one
read-only query with one test of what it returns.

Runs only on documents that passed the schema; every complaint is located at the offending value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner import durations, sqlsafety
from runner.errors import Problem
from runner.scenario.model import LATENCY_LEVELS
from runner.scenario.yamlsource import Located, Mark, locate, path_text
from runner.sqlvalue import TESTS

SQL_PARAMS = ("job_id", "tenant_id")
_LINE_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")
Parts = list[str | int]
Add = Callable[[Parts, str], None]


def latency_problems(expect: dict[str, Any], add: Add) -> None:
    """Within one step's limits (and the default's, and a job's end to end), p50 <= p95 <= p99 <= max."""
    sections = [(["expect", "latency", step], limits) for step, limits in expect.get("latency", {}).items()]
    if "job_latency" in expect:
        sections.append((["expect", "job_latency"], expect["job_latency"]))
    for parts, limits in sections:
        values = [(k, durations.parse(limits[k])) for k in LATENCY_LEVELS if k in limits]
        for (low_key, low), (high_key, high) in zip(values, values[1:]):
            if low > high:
                add(parts + [high_key], f"{high_key} ({limits[high_key]}) is below {low_key} ({limits[low_key]})")


def sql_problems(expect: dict[str, Any], root: Located, add: Add) -> list[Problem]:
    """Each check: one test (`rows` or one of the value's), values a test can use, one plain read-only query."""
    found: list[Problem] = []
    for i, check in enumerate(expect.get("sql", [])):
        given = [key for key in ("rows", *TESTS) if key in check]
        if len(given) != 1:
            add(["expect", "sql", i], _one_test(given))
        for key in given:
            _value_problems(check[key], key, ["expect", "sql", i, key], add)
        found += _query_problems(check["query"], ["expect", "sql", i, "query"], root, add)
    return found


def _one_test(given: list[str]) -> str:
    keys = ", ".join(repr(k) for k in ("rows", *TESTS))
    if not given:
        return f"say what the query must return: one of {keys}"
    return f"give one of {keys}, not {' and '.join(repr(k) for k in given)} (write one check per test)"


def _value_problems(value: Any, key: str, parts: Parts, add: Add) -> None:
    """A pattern that compiles; a range in order (the YAML reader refuses numbers that are not finite)."""
    if key == "matches":
        try:
            re.compile(value)
        except re.error as exc:
            add(parts, f"not a regular expression: {exc}")
    elif key == "between" and value[0] > value[1]:
        add(parts, f"the range is empty: {value[0]} is above {value[1]} (write [low, high])")


def _query_problems(query: str, parts: Parts, root: Located, add: Add) -> list[Problem]:
    analysis = sqlsafety.analyze(query)
    found = []
    for refusal in analysis.problems:
        mark, where = point_into(locate(root, parts), query, refusal.position)
        found.append(Problem(mark.file, mark.line, mark.col, path_text(parts), refusal.message + where))
    for name in analysis.params:
        if name not in SQL_PARAMS:
            add(parts, f"unknown parameter :{name}; available: " + ", ".join(f":{p}" for p in SQL_PARAMS))
    return found


def point_into(mark: Mark, query: str, position: int | None) -> tuple[Mark, str]:
    """Where character `position` of a query is: inside the YAML value when the file shows it as is
    on one line, else at the value, with " (at character N)" (1-based, as PostgreSQL counts) to add."""
    if position is None:
        return mark, ""
    start = _inline_start(mark, query)
    if start is None:
        return mark, f" (at character {position + 1})"
    return Mark(mark.file, mark.line, start + position), ""


def _inline_start(mark: Mark, query: str) -> int | None:
    """The column of a query's first character when its line holds it verbatim (plain or quoted, no escapes)."""
    if not query or _LINE_BREAK.search(query):
        return None
    try:
        line = _LINE_BREAK.split(Path(mark.file).read_text(encoding="utf-8-sig"))[mark.line - 1]
    except (OSError, UnicodeDecodeError, IndexError):
        return None
    text = line[mark.col - 1:]
    if text[:1] not in ("'", '"'):
        return mark.col if text.startswith(query) else None
    quote = text[0]
    verbatim = quote not in query and (quote == "'" or "\\" not in query)
    return mark.col + 1 if verbatim and text.startswith(quote + query + quote) else None

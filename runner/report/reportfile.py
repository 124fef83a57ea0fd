"""A saved JSON report read back (`report`, `compare`, `cleanup --report`): a file anyone may have edited.

Whatever is in it, the answer is the document or one InputError naming the file (and the JSON path
where there is one): the size is bounded before parsing, the nesting depth before the parser recurses,
and every number is finite and of a size arithmetic cannot overflow, so no reader meets a value
ye-run never writes.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from itertools import accumulate
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from runner import resources
from runner.errors import InputError

REPORT_LIMIT = 512 * 1024 * 1024
MAX_DEPTH = 64
"""A report nests about ten levels deep; the parser and the schema validator recurse once per level."""
MAX_NUMBER = 1e20
"""Seconds, counts and keys stay far below; sums and differences of such numbers never overflow a float."""

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class OutOfRange:
    """Where the file held a number no report holds (NaN, Infinity, 1e400): kept to be located, then refused."""

    literal: str

    def __repr__(self) -> str:
        shown = self.literal if len(self.literal) <= 24 else f"{self.literal[:12]}…{self.literal[-4:]}"
        return f"{shown}: a report's numbers are finite and below {MAX_NUMBER:g} in magnitude"


def read_json(path: Path, limit: int = REPORT_LIMIT) -> Any:
    """Any JSON document in `path`, parsed within bounds (size, depth, numbers); InputError naming the file."""
    try:
        text = _text(path, limit)
        _check_depth(text)
        doc, refused = _parse(text)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: $: not a ye-run JSON report ({exc})") from None
    if refused:
        where, number = _find_out_of_range(doc) or ("$", OutOfRange(refused[0]))  # a duplicate key may hide it
        raise InputError(f"{path}: {where}: not a ye-run JSON report ({number!r})")
    return doc


def load(path: Path) -> dict[str, Any]:
    """A ye-run JSON report: bounded, then valid against its schema (dates included); InputError otherwise."""
    doc = read_json(path)
    error = next(iter(_validator().iter_errors(doc)), None)
    if error is not None:
        raise InputError(f"{path}: {_json_path(error.absolute_path)}: not a ye-run JSON report "
                         f"({error.message[:200]})")
    return doc  # type: ignore[no-any-return]


def _text(path: Path, limit: int) -> str:
    from runner.scenario.yamlsource import read_bounded

    return read_bounded(path, limit).decode("utf-8")


def _check_depth(text: str) -> None:
    """Refuse nesting past MAX_DEPTH before json.loads recurses into it (brackets inside strings do not count)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if max(accumulate(map(_STEP.__getitem__, brackets)), default=0) <= MAX_DEPTH:
        return
    line, column = _too_deep_at(text)
    raise InputError(f"$: not a ye-run JSON report (nested deeper than {MAX_DEPTH} levels at line {line}, "
                     f"column {column})")


def _too_deep_at(text: str) -> tuple[int, int]:
    depth = 0
    for match in _TOKEN.finditer(text):
        depth += _STEP.get(match.group(), 0)
        if depth > MAX_DEPTH:
            start = match.start()
            return text.count("\n", 0, start) + 1, start - text.rfind("\n", 0, start)
    return 1, 1


def _parse(text: str) -> tuple[Any, list[str]]:
    """The document, and the out-of-range numbers it held (then, and only then, it is searched for them)."""
    refused: list[str] = []

    def refuse(literal: str) -> OutOfRange:
        refused.append(literal)
        return OutOfRange(literal)

    def real(literal: str) -> float | OutOfRange:
        value = float(literal)
        return value if math.isfinite(value) and abs(value) < MAX_NUMBER else refuse(literal)

    def whole(literal: str) -> int | OutOfRange:
        if len(literal.lstrip("-")) > 20:
            return refuse(literal)
        value = int(literal)
        return value if abs(value) < MAX_NUMBER else refuse(literal)

    return json.loads(text, parse_constant=refuse, parse_float=real, parse_int=whole), refused


def _find_out_of_range(doc: Any) -> tuple[str, OutOfRange] | None:
    """The first out-of-range number and its JSON path (a walk with a stack of its own: no recursion)."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), doc)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, OutOfRange):
            return _json_path(where), node
        if isinstance(node, dict):
            stack.extend(((*where, key), value) for key, value in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend(((*where, i), value) for i, value in reversed(list(enumerate(node))))
    return None


def _json_path(parts: Any) -> str:
    """`$.a[0].b`; a key that is not a plain name is quoted, so a crafted key cannot break the line or the terminal."""
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" if _PLAIN.fullmatch(p) else f"[{json.dumps(p)}]"
                         for p in parts)


_DATES = FormatChecker(formats=())


@_DATES.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    """What every reader does with a time: datetime.fromisoformat, with an offset (times are compared)."""
    return not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is not None


@cache
def _validator() -> Draft202012Validator:
    return resources.validator("report.schema.json").evolve(format_checker=_DATES)


FAILING = ("failed", "error", "interrupted")
"""Outcomes `--last-failed-from` runs again."""
TIMED = ("passed", "failed", "seeded", "flaky")
"""Outcomes of scenarios that ran their course: their durations balance `--shard`."""


def failed(doc: dict[str, Any]) -> frozenset[str]:
    """The scenarios that failed in a report, and the files that failed to load there (by file name)."""
    return frozenset(s["file"] if s.get("invalid") else s["name"] for s in doc["scenarios"] if s["outcome"] in FAILING)


def durations(doc: dict[str, Any]) -> dict[str, float]:
    """Seconds each scenario took in a report, of those that ran their course."""
    return {s["name"]: s["duration"] for s in doc["scenarios"] if s["outcome"] in TIMED and not s.get("invalid")}

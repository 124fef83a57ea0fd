"""JSON Schema errors, translated in one place into located, human messages.

One formatter per keyword; unknown keys and enum values get a "did you mean";
`anyOf` errors descend into the branch that matches the value's shape.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from typing import Any

from jsonschema import ValidationError

from runner import durations
from runner.errors import Problem
from runner.scenario.yamlsource import Located, locate, path_text

_STEPS: ContextVar[tuple[str, ...]] = ContextVar("step_names", default=())
"""The step names in force while one document's errors are translated."""
_STEP_HINT: ContextVar[str] = ContextVar("step_hint", default="")
"""What ends an unknown step's message while one document's errors are translated: the definition in force."""

_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "an empty value",
}


def translate(errors: Iterable[ValidationError], root: Located, resolve: Callable[[str], dict],
              step_names: Sequence[str] = (), step_hint: str = "") -> list[Problem]:
    """Every schema error as a Problem at the offending key or value, without duplicates.

    `step_names` are the pipeline definition's steps: an enum of exactly those is worded as a step, its message
    ended by `step_hint`.
    """
    problems: dict[tuple, Problem] = {}
    tokens = _STEPS.set(tuple(step_names)), _STEP_HINT.set(step_hint)
    try:
        found = [p for error in errors for p in _translate(error, root, resolve)]
    finally:
        _STEPS.reset(tokens[0])
        _STEP_HINT.reset(tokens[1])
    for problem in found:
        problems.setdefault((problem.line, problem.col, problem.path, problem.message), problem)
    return list(problems.values())


def _translate(error: ValidationError, root: Located, resolve: Callable[[str], dict]) -> list[Problem]:
    parts = list(error.absolute_path)
    if "propertyNames" in error.absolute_schema_path:
        key = str(error.instance)
        return [_at(root, parts + [key], _message(_key_error(error), is_key=True), at_key=True)]
    if error.validator in ("anyOf", "oneOf"):
        branch = _matching_branch(error, resolve)
        if branch is not None:
            return [p for sub in branch for p in _translate(sub, root, resolve)]
        return [_at(root, list(error.absolute_path), _describe_choices(error, resolve))]
    if error.validator == "additionalProperties":
        return _unknown_keys(error, root, parts)
    if error.validator == "required":
        return [_at(root, parts, _message(error))]
    return [_at(root, parts, _message(error))]


def _key_error(error: ValidationError) -> ValidationError:
    """A key `propertyNames` refused; where it allows a choice (a step, or `default`), the list's error."""
    if error.validator not in ("anyOf", "oneOf"):
        return error
    return next((sub for sub in error.context or () if sub.validator == "enum"), error)


def _at(root: Located, parts: list[str | int], message: str, at_key: bool = False) -> Problem:
    mark = locate(root, parts, at_key=at_key)
    return Problem(mark.file, mark.line, mark.col, path_text(parts), message)


def _unknown_keys(error: ValidationError, root: Located, parts: list[str | int]) -> list[Problem]:
    known = sorted(error.schema.get("properties", {}))
    problems = []
    for key in error.instance:
        if key in known:
            continue
        problems.append(_at(root, parts + [key], f"unknown key {key!r}{_suggest(key, known)}", at_key=True))
    return problems


def _suggest(word: str, candidates: Iterable[str]) -> str:
    candidates = list(candidates)
    close = difflib.get_close_matches(str(word), candidates, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    if len(candidates) <= 12:
        return f"; expected one of: {', '.join(candidates)}"
    return ""


def _message(error: ValidationError, is_key: bool = False) -> str:
    formatter = _FORMATTERS.get(str(error.validator))
    if formatter is None:
        return str(error.message)
    return formatter(error, is_key)


def _got(value: Any) -> str:
    if value is None:
        return "got an empty value"
    if isinstance(value, bool):
        return f"got {str(value).lower()}"
    if isinstance(value, dict):
        return "got a mapping"
    if isinstance(value, list):
        return "got a list"
    if isinstance(value, str):
        return f"got a string ({value!r})"
    return f"got {value!r}"


def _type(error: ValidationError, is_key: bool) -> str:
    if error.schema.get("pattern") == durations.PATTERN:
        return _bad_duration(error.instance)
    expected = error.validator_value
    names = expected if isinstance(expected, list) else [expected]
    words = " or ".join(_TYPE_WORDS.get(n, n) for n in names)
    return f"expected {words}, {_got(error.instance)}{_shape_hint(error)}"


def _shape_hint(error: ValidationError) -> str:
    """For a scalar where a mapping with one required key belongs (`tenant: qa_x`), show the shape."""
    required = error.schema.get("required") or [k for k in ("id",) if k in error.schema.get("properties", {})]
    path = list(error.absolute_path)
    if error.validator_value != "object" or isinstance(error.instance, (dict, list)) or not required or not path:
        return ""
    return f"; write {path[-1]}: {{{required[0]}: {error.instance}}}"


def _enum(error: ValidationError, is_key: bool) -> str:
    options = list(error.validator_value)
    value = error.instance
    if options and tuple(options) == _STEPS.get():
        what = "step name" if is_key else "step"
        return f"unknown {what} {value!r}{_suggest(str(value), options)}{_STEP_HINT.get()}"
    rendered = ", ".join(repr(o) for o in options)
    suggestion = _suggest(str(value), [str(o) for o in options]) if isinstance(value, str) else ""
    if suggestion.startswith("; did you mean"):
        return f"{value!r} is not allowed{suggestion}"
    return f"{value!r} is not allowed; expected one of: {rendered}"


def _pattern(error: ValidationError, is_key: bool) -> str:
    value = error.instance
    pattern = error.validator_value
    if pattern == durations.PATTERN:
        return _bad_duration(value)
    if pattern.startswith("^[a-z_][a-z0-9_]"):
        return (f"{value!r} is not a valid name: lowercase letters, digits and _, "
                "starting with a letter or _, at most 63 characters")
    if "A-Za-z0-9_.:-" in pattern:
        return f"{value!r} is not a valid tenant id: letters, digits, _ . : -, at most 63 characters"
    if pattern.startswith("^[a-z0-9]"):
        return f"{value!r} is not a valid tag: lowercase letters, digits, _ and -"
    if pattern.endswith("%$"):
        return f"{value!r} is not a tolerance: write a number (0.5) or a percentage (5%)"
    return f"{value!r} does not match {pattern}"


def _bad_duration(value: Any) -> str:
    if isinstance(value, str) and value.strip().startswith("-"):
        return f"bad duration {value!r}: durations cannot be negative"
    return f"bad duration {value!r}: write a number and a unit, e.g. 250ms, 30s, 5m, 1h"


def _bound(word: str) -> Callable[[ValidationError, bool], str]:
    def formatter(error: ValidationError, is_key: bool) -> str:
        return f"must be {word} {error.validator_value}, got {error.instance!r}"
    return formatter


def _size(noun: str, word: str) -> Callable[[ValidationError, bool], str]:
    def formatter(error: ValidationError, is_key: bool) -> str:
        return f"needs {word} {error.validator_value} {noun}"
    return formatter


def _required(error: ValidationError, is_key: bool) -> str:
    missing = [k for k in error.validator_value if k not in (error.instance or {})]
    return f"missing required key {missing[0]!r}" if missing else str(error.message)


def _unique(error: ValidationError, is_key: bool) -> str:
    seen: list[Any] = []
    for item in error.instance:
        if item in seen:
            return f"{item!r} appears more than once"
        seen.append(item)
    return "items must be unique"


def _const(error: ValidationError, is_key: bool) -> str:
    return f"expected {error.validator_value!r}, {_got(error.instance)}"


_FORMATTERS: dict[str, Callable[[ValidationError, bool], str]] = {
    "type": _type,
    "enum": _enum,
    "const": _const,
    "pattern": _pattern,
    "minimum": _bound("at least"),
    "maximum": _bound("at most"),
    "exclusiveMinimum": _bound("more than"),
    "exclusiveMaximum": _bound("less than"),
    "minItems": _size("item(s)", "at least"),
    "maxItems": _size("item(s)", "at most"),
    "minLength": _size("character(s)", "at least"),
    "maxLength": _size("character(s)", "at most"),
    "minProperties": _size("key(s)", "at least"),
    "required": _required,
    "uniqueItems": _unique,
}


# --- anyOf: choose the branch that fits the value's shape -------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _branch_types(schema: dict, resolve: Callable[[str], dict]) -> set[str]:
    if "$ref" in schema:
        return _branch_types(resolve(schema["$ref"]), resolve)
    if "type" in schema:
        declared = schema["type"]
        types = set(declared if isinstance(declared, list) else [declared])
        return types | ({"integer"} if "number" in types else set())
    if "enum" in schema:
        return {_json_type(v) for v in schema["enum"]}
    if "const" in schema:
        return {_json_type(schema["const"])}
    return set()


def _matching_branch(error: ValidationError, resolve: Callable[[str], dict]) -> list[ValidationError] | None:
    branches = error.validator_value
    instance_type = _json_type(error.instance)
    fits = [i for i, b in enumerate(branches) if instance_type in _branch_types(b, resolve)]
    if len(fits) > 1 and isinstance(error.instance, dict):
        keyed = [i for i in fits if set(branches[i].get("required", ())) & set(error.instance)]
        fits = keyed if len(keyed) == 1 else fits
    if len(fits) != 1:
        return None
    chosen = [sub for sub in error.context or () if sub.relative_schema_path[0] == fits[0]]
    return chosen or None


def _describe(schema: dict, resolve: Callable[[str], dict]) -> str:
    if "$ref" in schema:
        target = resolve(schema["$ref"])
        if target.get("pattern") == durations.PATTERN:
            return "a duration (e.g. 30s)"
        return _describe(target, resolve)
    if "enum" in schema:
        values = [repr(v) for v in schema["enum"]]
        return ", ".join(values[:-1]) + " or " + values[-1] if len(values) > 1 else values[0]
    if "const" in schema:
        return repr(schema["const"])
    if schema.get("type") == "object" and schema.get("properties"):
        return f"a mapping (keys: {', '.join(schema['properties'])})"
    declared = schema.get("type", "value")
    names = declared if isinstance(declared, list) else [declared]
    return " or ".join(_TYPE_WORDS.get(n, n) for n in names)


def _describe_choices(error: ValidationError, resolve: Callable[[str], dict]) -> str:
    options = ", or ".join(_describe(b, resolve) for b in error.validator_value)
    return f"expected {options}; {_got(error.instance)}"

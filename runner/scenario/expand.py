"""Variables and matrices: one scenario file, resolved for this machine and multiplied into instances.

`${NAME}` and `${NAME:-default}` in string values come from `--var NAME=VALUE`, else the
environment; `$${NAME}` is a literal `${NAME}`. (Fixture placeholders such as `${job.id}` have a
dot and are left alone.) `matrix:` maps top-level keys to lists of values; the scenario becomes
one instance per combination, named `smoke[variants=5,images=b.jpg]`. Both work on the located
tree, so every value keeps the line it was written on.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping
from pathlib import Path

from runner.errors import Problem, ScenarioError
from runner.scenario.yamlsource import Located, Mark, join_path

VARIABLE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
NOT_IN_MATRIX = ("name", "matrix", "extends", "$schema", "description")
MAX_INSTANCES = 200


def variables(given: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables in force: the environment, overridden by `--var`."""
    return {**os.environ, **(given or {})}


def substitute(root: Located, values: Mapping[str, str]) -> list[Problem]:
    """Replace variables in every string of the tree, in place; a located problem for each undefined one."""
    problems: list[Problem] = []
    _walk(root, "$", values, problems)
    return problems


def _walk(node: Located, path: str, values: Mapping[str, str], problems: list[Problem]) -> None:
    if isinstance(node.value, dict):
        for key, (_, child) in node.value.items():
            if key != "matrix":
                _walk(child, join_path(path, key), values, problems)
        if "matrix" in node.value and path == "$":
            _walk(node.value["matrix"][1], "$.matrix", values, problems)
    elif isinstance(node.value, list):
        for index, child in enumerate(node.value):
            _walk(child, join_path(path, index), values, problems)
    elif isinstance(node.value, str) and "${" in node.value:
        node.value = VARIABLE.sub(lambda m: _value(m, node.mark, path, values, problems), node.value)


def _value(match: re.Match[str], mark: Mark, path: str, values: Mapping[str, str], problems: list[Problem]) -> str:
    escaped, name, default = match.group(1), match.group(2), match.group(3)
    if escaped:
        return match.group(0)[1:]
    if name in values:
        return values[name]
    if default is not None:
        return default
    problems.append(Problem(mark.file, mark.line, mark.col, path,
                            f"undefined variable ${{{name}}}: set it in the environment or with --var {name}=VALUE "
                            f"(or give a default: ${{{name}:-value}})"))
    return match.group(0)


def instances(root: Located) -> list[tuple[str | None, Located]]:
    """(instance label, tree) for each combination of the matrix; [(None, root)] without one."""
    if not isinstance(root.value, dict) or "matrix" not in root.value:
        return [(None, root)]
    key_mark, matrix = root.value["matrix"]
    problems = _matrix_problems(matrix)
    if problems:
        raise ScenarioError(problems)
    axes = [(key, child.value) for key, (_, child) in matrix.value.items()]
    combinations = list(itertools.product(*(values for _, values in axes)))
    if len(combinations) > MAX_INSTANCES:
        raise ScenarioError([Problem(key_mark.file, key_mark.line, key_mark.col, "$.matrix",
                                     f"{len(combinations)} instances; the limit is {MAX_INSTANCES}")])
    out = []
    for combination in combinations:
        tree = {k: v for k, v in root.value.items() if k != "matrix"}
        for (key, _), value in zip(axes, combination):
            tree[key] = (matrix.value[key][0], value)
        label = ",".join(f"{key}={_label(value)}" for (key, _), value in zip(axes, combination))
        out.append((label, Located(tree, root.mark)))
    return out


def _matrix_problems(matrix: Located) -> list[Problem]:
    def at(mark: Mark, path: str, message: str) -> Problem:
        return Problem(mark.file, mark.line, mark.col, path, message)

    if not isinstance(matrix.value, dict) or not matrix.value:
        return [at(matrix.mark, "$.matrix", "expected a mapping of top-level keys to lists of values")]
    problems = []
    for key, (key_mark, values) in matrix.value.items():
        if key in NOT_IN_MATRIX:
            problems.append(at(key_mark, f"$.matrix.{key}", f"{key!r} cannot vary in a matrix"))
        elif not isinstance(values.value, list) or not values.value:
            problems.append(at(values.mark, f"$.matrix.{key}", "expected a non-empty list of values"))
    return problems


def _label(value: Located) -> str:
    """A value as it reads in an instance's name: scalars as written, file names by their last part."""
    if isinstance(value.value, list):
        return "+".join(_label(v) for v in value.value)
    if isinstance(value.value, dict):
        return "{" + ",".join(f"{k}={_label(v)}" for k, (_, v) in value.value.items()) + "}"
    text = str(value.value).lower() if isinstance(value.value, bool) else str(value.value)
    return Path(text).name if "/" in text else text

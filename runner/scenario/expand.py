"""Variables and matrices: one scenario file, resolved for this machine and multiplied into instances.

`${NAME}` and `${NAME:-default}` in string values come from `--var NAME=VALUE`, else the
environment (the language itself, nested defaults included, is `variables`). `matrix:` maps
top-level keys to lists of values; the scenario becomes one instance per combination, named
`smoke[variants=5,images=b.jpg]` with labels unique within each key. Both work on the located
tree, so every value keeps the line it was written on.
"""

from __future__ import annotations

import collections
import itertools
import math
import os
from collections.abc import Mapping

from runner.errors import Problem, ScenarioError
from runner.scenario import variables as variables_
from runner.scenario.yamlsource import MAX_BYTES, Located, Mark, join_path

NOT_IN_MATRIX = ("name", "matrix", "extends", "$schema", "description")
MAX_INSTANCES = 200
MAX_LABEL_PARTS = 8
"""How much of a path an instance's label may use to tell two values apart before it falls back to a position."""
MAX_NESTING = variables_.MAX_NESTING
MAX_SUBSTITUTED = 2 * MAX_BYTES
"""Characters the strings holding variables may come to once substituted (aliases can repeat one many times)."""


def variables(given: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables in force: the environment, overridden by `--var`."""
    return {**os.environ, **(given or {})}


def substitute(root: Located, values: Mapping[str, str]) -> list[Problem]:
    """Replace variables in every string of the tree, in place; a located problem for each undefined one, and
    for defaults nested too deep. ScenarioError when the substituted text would pass MAX_SUBSTITUTED."""
    problems: list[Problem] = []
    _walk(root, "$", variables_.Resolver(values, MAX_SUBSTITUTED), problems)
    return problems


def _walk(node: Located, path: str, resolver: variables_.Resolver, problems: list[Problem]) -> None:
    if isinstance(node.value, dict):
        for key, (_, child) in node.value.items():
            if key != "matrix":
                _walk(child, join_path(path, key), resolver, problems)
        if "matrix" in node.value and path == "$":
            _walk(node.value["matrix"][1], "$.matrix", resolver, problems)
    elif isinstance(node.value, list):
        for index, child in enumerate(node.value):
            _walk(child, join_path(path, index), resolver, problems)
    elif isinstance(node.value, str) and "${" in node.value:
        _string(node, path, resolver, problems)


def _string(node: Located, path: str, resolver: variables_.Resolver, problems: list[Problem]) -> None:
    def at(message: str) -> Problem:
        return Problem(node.mark.file, node.mark.line, node.mark.col, path, message)

    try:
        parts = variables_.parse(node.value)
    except variables_.TooDeep:
        problems.append(at(f"variable defaults nested deeper than {variables_.MAX_NESTING} levels"))
        return
    known = len(resolver.undefined)
    try:
        node.value = resolver.text(parts)
    except variables_.TooLong:
        raise ScenarioError([at(f"with variables substituted, the file's text would pass {MAX_SUBSTITUTED:,} "
                                "characters; refusing to build it")]) from None
    problems.extend(at(f"undefined variable ${{{name}}}: set it in the environment or with --var {name}=VALUE "
                       f"(or give a default: ${{{name}:-value}})") for name in resolver.undefined[known:])


def instances(root: Located) -> list[tuple[str | None, Located]]:
    """(instance label, tree) for each combination of the matrix; [(None, root)] without one. The count is
    known from the list lengths, so a matrix over the limit is refused before any combination is made."""
    if not isinstance(root.value, dict) or "matrix" not in root.value:
        return [(None, root)]
    key_mark, matrix = root.value["matrix"]
    problems = _matrix_problems(matrix)
    if problems:
        raise ScenarioError(problems)
    axes = [(key, child.value) for key, (_, child) in matrix.value.items()]
    count = math.prod(len(values) for _, values in axes)
    if count > MAX_INSTANCES:
        raise ScenarioError([Problem(key_mark.file, key_mark.line, key_mark.col, "$.matrix",
                                     f"the matrix makes {count:,} instances; the limit is {MAX_INSTANCES}")])
    labels = [_axis_labels(values) for _, values in axes]
    out = []
    for combination in itertools.product(*(range(len(values)) for _, values in axes)):
        tree = {k: v for k, v in root.value.items() if k != "matrix"}
        for (key, values), index in zip(axes, combination):
            tree[key] = (matrix.value[key][0], values[index])
        label = ",".join(f"{key}={axis[index]}" for (key, _), axis, index in zip(axes, labels, combination))
        out.append((label, Located(tree, root.mark)))
    _refuse_twins([label for label, _ in out], key_mark)
    return out


def _axis_labels(values: list[Located]) -> list[str]:
    """Each value's label, unique within its list: a file name by its last part, by more of its path where
    another value shares that part, and by its position (`#2`) where nothing else tells them apart. A label
    depends only on the list, so it stays the same from night to night while the file does."""
    labels = [_label(value, 1) for value in values]
    for depth in range(2, MAX_LABEL_PARTS + 1):
        clashing = _clashing(labels)
        deeper = {i: _label(values[i], depth) for i in clashing}
        if all(deeper[i] == labels[i] for i in clashing):
            break
        for i, label in deeper.items():
            labels[i] = label
    clashing = _clashing(labels)
    return [f"{label}#{i + 1}" if i in clashing else label for i, label in enumerate(labels)]


def _clashing(labels: list[str]) -> set[int]:
    counts = collections.Counter(labels)
    return {i for i, label in enumerate(labels) if counts[label] > 1}


def _refuse_twins(labels: list[str], key_mark: Mark) -> None:
    """Values written to read alike (`a,b=c` beside `a`) could still name two instances the same."""
    twins = sorted({labels[i] for i in _clashing(labels)})
    if twins:
        raise ScenarioError([Problem(key_mark.file, key_mark.line, key_mark.col, "$.matrix",
                                     f"two instances would both be named [{twins[0]}]; make their values differ")])


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


def _label(value: Located, parts: int) -> str:
    """A value as it reads in an instance's name: scalars as written, file names by their last `parts` parts."""
    if isinstance(value.value, list):
        return "+".join(_label(v, parts) for v in value.value)
    if isinstance(value.value, dict):
        return "{" + ",".join(f"{k}={_label(v, parts)}" for k, (_, v) in value.value.items()) + "}"
    text = str(value.value).lower() if isinstance(value.value, bool) else str(value.value)
    if "/" not in text:
        return text
    path = text.rstrip("/") or text
    return "/".join(path.rsplit("/", parts)[-parts:])

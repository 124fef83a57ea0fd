"""Files shipped inside the package (JSON Schemas, SQL, default images), loaded once."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError, validators
from referencing import Registry, Resource

from runner.definition import DEFAULT, Definition

SCHEMA_NAMES = ("scenario.schema.json", "pipeline.schema.json", "report.schema.json", "definition.schema.json")
STEPPED = ("scenario.schema.json", "pipeline.schema.json")
"""Schemas whose step and status names come from the pipeline definition in force."""


def schema_text(name: str, definition: Definition | None = None) -> str:
    """A shipped schema as text; for a custom definition, the scenario schemas with its step names."""
    if definition is not None and definition.sha256 != DEFAULT.sha256 and name in STEPPED:
        return json.dumps(schema(name, definition), indent=2, ensure_ascii=False) + "\n"
    return resources.files("runner.schemas").joinpath(name).read_text(encoding="utf-8")


@cache
def _shipped(name: str) -> dict[str, Any]:
    return json.loads(schema_text(name))


def schema(name: str, definition: Definition | None = None) -> dict[str, Any]:
    """A shipped schema, with the step and status enums of `definition` where it is not the default."""
    if definition is None or definition.sha256 == DEFAULT.sha256 or name not in STEPPED:
        return _shipped(name)
    return _patched(name, definition)


@cache
def _patched(name: str, definition: Definition) -> dict[str, Any]:
    """The shipped schema with every enum of the default's steps, statuses and seed states replaced."""
    swaps = {tuple(DEFAULT.names): list(definition.names), tuple(DEFAULT.statuses): list(definition.statuses),
             tuple(DEFAULT.seed_states): list(definition.seed_states)}
    doc = _swap_enums(copy.deepcopy(_shipped(name)), swaps)
    if name == "scenario.schema.json":
        doc["properties"]["start"]["default"] = definition.seed_states[0]
    return doc


def _swap_enums(node: Any, swaps: dict[tuple, list]) -> Any:
    if isinstance(node, dict):
        if isinstance(node.get("enum"), list) and tuple(node["enum"]) in swaps:
            node["enum"] = swaps[tuple(node["enum"])]
        for value in node.values():
            _swap_enums(value, swaps)
    elif isinstance(node, list):
        for value in node:
            _swap_enums(value, swaps)
    return node


@cache
def _registry(definition: Definition | None) -> Registry:
    pairs = []
    for name in SCHEMA_NAMES:
        if resources.files("runner.schemas").joinpath(name).is_file():
            pairs.append((name, Resource.from_contents(schema(name, definition))))
    return Registry().with_resources(pairs)


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict) -> Iterator[ValidationError]:
    """`pattern` as JSON Schema means it (ECMA-262): `$` is the end of the string, never before a final newline."""
    if validator.is_type(instance, "string") and not _ecma(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@cache
def _ecma(pattern: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"(?<!\\)\$", r"\\Z", pattern))


_Validator = validators.extend(Draft202012Validator, {"pattern": _pattern})


@cache
def validator(name: str, definition: Definition | None = None) -> Draft202012Validator:
    """A validator for one shipped schema; cross-file `$ref`s resolve to the shipped files."""
    return _Validator(schema(name, definition), registry=_registry(definition))


def sql(name: str) -> str:
    return resources.files("runner.db").joinpath("sql", name).read_text(encoding="utf-8")


def default_images_dir() -> Path:
    """The directory holding the images shipped with ye-run (`pipeline_test/`)."""
    return Path(str(resources.files("runner.pipeline_test")))

"""Files shipped inside the package (JSON Schemas, SQL, default images), loaded once."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMA_NAMES = ("scenario.schema.json", "pipeline.schema.json", "report.schema.json")


def schema_text(name: str) -> str:
    return resources.files("runner.schemas").joinpath(name).read_text(encoding="utf-8")


@cache
def schema(name: str) -> dict[str, Any]:
    return json.loads(schema_text(name))


@cache
def _registry() -> Registry:
    pairs = []
    for name in SCHEMA_NAMES:
        if resources.files("runner.schemas").joinpath(name).is_file():
            pairs.append((name, Resource.from_contents(schema(name))))
    return Registry().with_resources(pairs)


@cache
def validator(name: str) -> Draft202012Validator:
    """A validator for one shipped schema; cross-file `$ref`s resolve to the shipped files."""
    return Draft202012Validator(schema(name), registry=_registry())


def sql(name: str) -> str:
    return resources.files("runner.db").joinpath("sql", name).read_text(encoding="utf-8")


def default_images_dir() -> Path:
    """The directory holding the images shipped with ye-run (`pipeline_test/`)."""
    return Path(str(resources.files("runner.pipeline_test")))

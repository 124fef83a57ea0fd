"""Checks that keep schema-valid values inside what the runner and PostgreSQL can hold.

A JSON Schema says a duration looks like `30s`; it cannot say `99999999999999h` overflows a
timer, that an isolated tenant id outgrows 63 characters once the run id is appended, or that
an image's header claims more pixels than anyone should decode. Each complaint is located.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from runner import durations, imagefile, resources
from runner.errors import InputError, Problem
from runner.scenario.semantics import resolve_image
from runner.scenario.yamlsource import Located, locate, path_text

TENANT_ID_MAX = 63
ISOLATION_SUFFIX = 7
"""`_` and the run id's 6 hex characters, appended to an isolated tenant's id."""

Parts = list[str | int]


def problems(doc: dict[str, Any], root: Located, schema_name: str = "scenario.schema.json") -> list[Problem]:
    """Every out-of-bounds value of a schema-valid document."""
    out: dict[str, Problem] = {}
    for parts, text in _durations(doc, resources.schema(schema_name), resources.schema(schema_name), []):
        message = durations.problem(text)
        if message:
            found = _at(root, parts, message)
            out.setdefault(found.path, found)
    return list(out.values()) + _tenant(doc, root) + _image(doc, root)


def _tenant(doc: dict[str, Any], root: Located) -> list[Problem]:
    tenant = doc.get("tenant", {}) if isinstance(doc.get("tenant"), dict) else {}
    room = TENANT_ID_MAX - ISOLATION_SUFFIX
    if tenant.get("isolate") and len(tenant.get("id", "")) > room:
        return [_at(root, ["tenant", "id"], f"with isolate: true the id may have at most {room} characters "
                                           f"(ye-run appends _ and 6 characters of the run id; PostgreSQL "
                                           f"names stop at {TENANT_ID_MAX}); this one has {len(tenant['id'])}")]
    return []


def _image(doc: dict[str, Any], root: Located) -> list[Problem]:
    """The image that will be used must be one a seed can read (a header check, no decoding)."""
    for index in range(len(doc.get("images", ()))):
        path = resolve_image(root, index)
        if path.is_file():
            try:
                imagefile.header(path)
            except InputError as exc:
                return [_at(root, ["images", index], str(exc))]
            return []
    return []


def _at(root: Located, parts: Parts, message: str) -> Problem:
    mark = locate(root, parts)
    return Problem(mark.file, mark.line, mark.col, path_text(parts), message)


def _durations(value: Any, schema: dict, document: dict, parts: Parts) -> Iterator[tuple[Parts, str]]:
    """(path, text) of every value the schema declares a duration, following $refs and anyOf."""
    if "$ref" in schema:
        ref = schema["$ref"]
        if ref == "#/$defs/duration":
            if isinstance(value, str):
                yield parts, value
            return
        if ref.startswith("#/"):
            target: Any = document
            for key in ref[2:].split("/"):
                target = target.get(key, {})
            yield from _durations(value, target, document, parts)
        else:
            other = resources.schema(ref)
            yield from _durations(value, other, other, parts)
        return
    for branch in schema.get("anyOf", ()):
        yield from _durations(value, branch, document, parts)
    if isinstance(value, dict):
        named = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, child in value.items():
            sub = named.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                yield from _durations(child, sub, document, parts + [key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, child in enumerate(value):
            yield from _durations(child, schema["items"], document, parts + [index])

"""Reading YAML safely and keeping where every key and value came from.

PyYAML's `safe_load` forgets positions, silently keeps the last of two duplicate keys, and
expands aliases without limit. This module composes the node graph with `SafeLoader`, then
builds a located tree itself: duplicate keys are errors, merge keys (`<<: *anchor`) work,
alias expansion, nesting depth and file size are bounded, and every node keeps its mark.
"""

from __future__ import annotations

import math
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from runner.errors import Problem, ScenarioError
from runner.scenario.model import Origin

MAX_BYTES = 1_000_000
MAX_DEPTH = 40
MAX_NODES = 50_000
"""Nodes after alias expansion; a 'billion laughs' file stops here instead of eating memory."""

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null")}
_TIMESTAMP = _TAG + "timestamp"
_MERGE = _TAG + "merge"
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
"""C0 and C1 controls but tab, newline and carriage return; surrogates; the XML non-characters."""


Mark = Origin
"""Where a value was written: the model's Origin, kept by every located node."""


@dataclass(slots=True)
class Located:
    """A YAML value with its position; mappings hold `{key: (key_mark, Located)}`."""

    value: Any
    mark: Mark


def problem(mark: Mark, path: str, message: str) -> ScenarioError:
    return ScenarioError([Problem(mark.file, mark.line, mark.col, path, message)])


def read(path: Path, display: str) -> Located:
    """Read one YAML file into a located tree; raises ScenarioError naming file:line:col."""
    start = Mark(display, 1, 1)
    try:
        raw = read_bounded(path, MAX_BYTES)
    except FileNotFoundError:
        raise problem(start, "$", "file not found") from None
    except IsADirectoryError:
        raise problem(start, "$", "is a directory, not a YAML file") from None
    except ValueError as exc:
        raise problem(start, "$", str(exc)) from None
    except OSError as exc:
        raise problem(start, "$", f"cannot read file: {exc.strerror}") from None
    return parse(_decode(raw, start), display)


def read_bounded(path: Path, limit: int) -> bytes:
    """A regular file's bytes, at most `limit` of them; ValueError for a FIFO, a device or a larger file.

    The size is checked on what is read, not on what stat reports (`/dev/zero` reports 0), and a
    FIFO is refused before it is opened (opening one blocks until a writer comes).
    """
    mode = path.stat().st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(path)
    if not stat.S_ISREG(mode):
        raise ValueError("not a regular file (a FIFO, socket or device); give a file")
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"file is larger than {limit} bytes; the limit is {limit}")
    return data


def parse(text: str, display: str) -> Located:
    """Parse YAML text (one document) into a located tree."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise problem(Mark(display, 1, 1), "$", f"document is larger than {MAX_BYTES} bytes")
    _check_events(text, display)
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise _yaml_problem(exc, display) from None
    except yaml.YAMLError as exc:
        raise problem(Mark(display, 1, 1), "$", f"invalid YAML: {exc}") from None
    except RecursionError:
        raise problem(Mark(display, 1, 1), "$", f"nesting is deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()
    if root is None:
        raise problem(Mark(display, 1, 1), "$", "the file is empty; a scenario is a mapping of keys")
    return _Builder(loader, display).build(root, "$", 0)


def _decode(raw: bytes, start: Mark) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise problem(Mark(start.file, line, col), "$", "the file is not UTF-8 text") from None


def _mark(file: str, yaml_mark: Any) -> Mark:
    if yaml_mark is None:
        return Mark(file, 1, 1)
    return Mark(file, yaml_mark.line + 1, yaml_mark.column + 1)


def _yaml_problem(exc: yaml.MarkedYAMLError, file: str) -> ScenarioError:
    mark = exc.problem_mark or exc.context_mark
    what = " ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
    if "'\\t'" in what:
        return problem(_mark(file, mark), "$", "invalid YAML: a tab here; YAML is indented with spaces, not tabs")
    return problem(_mark(file, mark), "$", f"invalid YAML: {what}")


def _check_events(text: str, file: str) -> None:
    """Reject deep nesting and multiple documents before composing (composing recurses)."""
    depth = 0
    documents = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise problem(_mark(file, event.start_mark), "$", f"nesting is deeper than {MAX_DEPTH} levels")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
            elif isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise problem(_mark(file, event.start_mark), "$", "one scenario per file: found a second YAML document")
    except yaml.MarkedYAMLError as exc:
        raise _yaml_problem(exc, file) from None
    except yaml.YAMLError as exc:
        raise problem(Mark(file, 1, 1), "$", f"invalid YAML: {exc}") from None


class _Builder:
    """Turns composed nodes into Located values, counting every expanded node."""

    def __init__(self, loader: yaml.SafeLoader, file: str):
        self.loader = loader
        self.file = file
        self.count = 0
        self.open: set[int] = set()

    def build(self, node: Node, path: str, depth: int) -> Located:
        self.count += 1
        mark = _mark(self.file, node.start_mark)
        if id(node) in self.open:
            raise problem(mark, path, "recursive alias: this value contains itself")
        if self.count > MAX_NODES:
            raise problem(mark, path, f"the document expands to more than {MAX_NODES} nodes "
                          "(aliases referring to aliases?); refusing to expand it")
        if depth > MAX_DEPTH:
            raise problem(mark, path, f"nesting is deeper than {MAX_DEPTH} levels")
        if isinstance(node, ScalarNode):
            return Located(self._scalar(node, path), mark)
        self.open.add(id(node))
        try:
            return Located(self._collection(node, path, depth), mark)
        finally:
            self.open.discard(id(node))

    def _collection(self, node: Node, path: str, depth: int) -> Any:
        if isinstance(node, SequenceNode):
            self._expect_tag(node, "seq", path)
            return [self.build(child, f"{path}[{i}]", depth + 1) for i, child in enumerate(node.value)]
        if isinstance(node, MappingNode):
            self._expect_tag(node, "map", path)
            return self._mapping(node, path, depth)
        raise problem(_mark(self.file, node.start_mark), path, "unsupported YAML node")

    def _expect_tag(self, node: Node, kind: str, path: str) -> None:
        if node.tag != _TAG + kind:
            raise problem(_mark(self.file, node.start_mark), path, f"unsupported YAML tag {_short(node.tag)}: only plain mappings and lists")

    def _scalar(self, node: ScalarNode, path: str) -> Any:
        if node.tag == _TIMESTAMP:
            return node.value
        if node.tag not in _SCALAR_TAGS:
            raise problem(_mark(self.file, node.start_mark), path,
                          f"unsupported YAML tag {_short(node.tag)}: only strings, numbers, booleans and null")
        try:
            value = self.loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError) as exc:
            raise problem(_mark(self.file, node.start_mark), path, f"bad scalar {node.value!r}: {exc}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise problem(_mark(self.file, node.start_mark), path, f"{node.value!r} is not a finite number")
        if isinstance(value, str):
            self._printable(value, node, path)
        return value

    def _printable(self, value: str, node: Node, path: str) -> None:
        """No NUL or control characters: PostgreSQL text cannot hold NUL, XML reports cannot hold the rest,
        and a terminal would obey them."""
        found = _FORBIDDEN.search(value)
        if found is None:
            return
        char = found.group(0)
        what = "a NUL character (\\0); PostgreSQL text cannot hold it" if char == "\0" else \
            f"the control character U+{ord(char):04X}; only tab and newline are allowed in text"
        raise problem(_mark(self.file, node.start_mark), path, f"contains {what}")

    def _mapping(self, node: MappingNode, path: str, depth: int) -> dict[str, tuple[Mark, Located]]:
        explicit: dict[str, tuple[Mark, Located]] = {}
        merged: dict[str, tuple[Mark, Located]] = {}
        for key_node, value_node in node.value:
            key_mark = _mark(self.file, key_node.start_mark)
            if key_node.tag == _MERGE:
                for source in self._merge_sources(value_node, path, depth):
                    for key, entry in source.items():
                        merged.setdefault(key, entry)
                continue
            key = self._key(key_node, path)
            child_path = _join(path, key)
            if key in explicit:
                first = explicit[key][0]
                raise problem(key_mark, child_path, f"duplicate key {key!r} (first at line {first.line}, "
                              f"column {first.col}); YAML would silently keep only the last one")
            explicit[key] = (key_mark, self.build(value_node, child_path, depth + 1))
        return {**merged, **explicit}

    def _key(self, key_node: Node, path: str) -> str:
        mark = _mark(self.file, key_node.start_mark)
        if not isinstance(key_node, ScalarNode):
            raise problem(mark, path, "mapping keys must be plain strings")
        self.count += 1
        value = self._scalar(key_node, path)
        if not isinstance(value, str):
            raise problem(mark, path, f"key {key_node.value!r} must be a string (quote it)")
        return value

    def _merge_sources(self, node: Node, path: str, depth: int) -> list[dict[str, tuple[Mark, Located]]]:
        nodes = node.value if isinstance(node, SequenceNode) else [node]
        sources = []
        for source in nodes:
            built = self.build(source, path, depth + 1)
            if not isinstance(built.value, dict):
                raise problem(built.mark, path, "a merge key (<<) takes a mapping or a list of mappings")
            sources.append(built.value)
        return sources


def _short(tag: str) -> str:
    return "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag


def _join(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{key!r}]"


def join_path(path: str, key: str | int) -> str:
    """The JSON path of a child: `$.expect.steps[3]`."""
    return f"{path}[{key}]" if isinstance(key, int) else _join(path, key)


def to_plain(node: Located) -> Any:
    """The JSON-like value of a located tree (what the JSON Schema validates)."""
    if isinstance(node.value, dict):
        return {key: to_plain(child) for key, (_, child) in node.value.items()}
    if isinstance(node.value, list):
        return [to_plain(child) for child in node.value]
    return node.value


def locate(node: Located, parts: list[str | int] | tuple[str | int, ...], at_key: bool = False) -> Mark:
    """Mark of the value (or of its key) at a JSON path; the nearest ancestor if absent."""
    mark = node.mark
    current: Located | None = node
    for i, part in enumerate(parts):
        if current is None:
            break
        value = current.value
        last = i == len(parts) - 1
        if isinstance(value, dict) and isinstance(part, str) and part in value:
            key_mark, current = value[part]
            mark = key_mark if (last and at_key) else current.mark
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            current = value[part]
            mark = current.mark
        else:
            break
    return mark


def path_text(parts: list[str | int] | tuple[str | int, ...]) -> str:
    text = "$"
    for part in parts:
        text = join_path(text, part)
    return text

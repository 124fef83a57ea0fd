"""The project config: a repository's defaults for `ye-run run`, `list` and `validate` (docs/config.md).

`ye-run.toml`, or `pyproject.toml` with a `[tool.ye-run]` table, the nearest found from the working directory
up (`ye-run.toml` first in a directory). Paths in it are relative to the file, so every directory of the
repository runs the same night; they are shown relative to the working directory. The database is named by the
environment variable holding its URL, never by the URL, so no password is committed. A flag (or its environment
variable) overrides a value; the CLI applies them. Every problem is located (`file:line:col: key: message`).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import Problem, ScenarioError
from runner.scenario.pipelines import Folder

FILE_NAME = "ye-run.toml"
TABLE = ("tool", "ye-run")
MAX_BYTES = 1_000_000
MAX_PARALLEL = 64
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

KEYS: dict[str, str] = {
    "paths": "paths",
    "pipeline_file": "path",
    "database_url_env": "env",
    "parallel": "parallel",
    "tags": "words",
    "skip_tags": "words",
    "junit": "path",
    "json": "path",
    "html": "path",
}
"""Every key of the table (but `pipelines`) and the kind of value it holds."""

SECRET = ("unknown key 'database_url': the project config names the environment variable holding the URL "
          "(database_url_env = \"NAME\"), so no password is written into the repository")


@dataclass(frozen=True, slots=True)
class Setting:
    """One value of the project config, resolved (paths from the working directory), and where it was written."""

    key: str
    value: Any
    file: str
    line: int

    @property
    def at(self) -> str:
        """`file:line`, for messages."""
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Project:
    """A project config (or none: `file` None and nothing in it)."""

    file: Path | None = None
    display: str = ""
    settings: tuple[Setting, ...] = ()
    folders: tuple[Folder, ...] = ()

    def get(self, key: str) -> Setting | None:
        """The setting of `key`, when the file has one."""
        return next((s for s in self.settings if s.key == key), None)


def discover(cwd: Path | None = None, given: Path | None = None) -> Project:
    """The project config given (`--config`), else the nearest from `cwd` up, else an empty one."""
    here = (cwd or Path.cwd()).resolve()
    file = given or find(here)
    return Project() if file is None else load(file, here)


def find(start: Path) -> Path | None:
    """The nearest `ye-run.toml`, or `pyproject.toml` with a `[tool.ye-run]` table, from `start` up."""
    for directory in (start, *start.parents):
        if (directory / FILE_NAME).is_file():
            return directory / FILE_NAME
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file() and _has_table(pyproject):
            return pyproject
    return None


def _has_table(pyproject: Path) -> bool:
    """Whether a pyproject.toml holds `[tool.ye-run]` (one that does not is no project config, even broken)."""
    try:
        text = pyproject.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return re.search(r"^\s*\[\s*tool\s*\.\s*[\"']?ye-run[\"']?\s*[.\]]", text, re.M) is not None


def load(file: Path, cwd: Path | None = None) -> Project:
    """The project config in `file`; ScenarioError listing every problem, each at its line."""
    here = (cwd or Path.cwd()).resolve()
    display = os.path.relpath(file, here) if file.is_absolute() else str(file)
    text = _read(file, display)
    document = _parse(text, display)
    prefix = TABLE if file.name == "pyproject.toml" else ()
    table = _dig(document, prefix)
    reader = _Reader(display, prefix, _Lines(text), file.resolve().parent, here)
    settings = reader.settings(table)
    folders = reader.folders(table.get("pipelines", {}))
    if reader.problems:
        raise ScenarioError(reader.problems)
    return Project(file, display, settings, folders)


def _read(file: Path, display: str) -> str:
    try:
        with file.open("rb") as stream:
            raw = stream.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise ScenarioError([Problem(display, 1, 1, "$", f"larger than {MAX_BYTES:,} bytes")])
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError([Problem(display, 1, 1, "$", f"not UTF-8 text ({exc.reason})")]) from None
    except OSError as exc:
        raise ScenarioError([Problem(display, 1, 1, "$", f"cannot read it: {exc.strerror or exc}")]) from None


def _parse(text: str, display: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r" \(at line (\d+), column (\d+)\)$", message)
        line, col = (int(found[1]), int(found[2])) if found else (max(1, text.count("\n")), 1)
        reason = message[: found.start()] if found else re.sub(r" \(at end of document\)$", "", message)
        raise ScenarioError([Problem(display, line, col, "$", f"invalid TOML: {reason}")]) from None


def _dig(document: dict[str, Any], parts: tuple[str, ...]) -> dict[str, Any]:
    for part in parts:
        document = document.get(part, {})
    return document if isinstance(document, dict) else {}


class _Lines:
    """Where each key was written: tomllib keeps no positions, so the text's table headers and `key =` lines."""

    _HEADER = re.compile(r"^\s*\[(?!\[)(.+?)\]\s*(#.*)?$")
    _KEY = re.compile(r"^(\s*)(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+)\s*=")

    def __init__(self, text: str):
        self.marks: dict[tuple[str, ...], tuple[int, int]] = {}
        table: tuple[str, ...] = ()
        for number, line in enumerate(text.splitlines(), start=1):
            header, key = self._HEADER.match(line), self._KEY.match(line)
            if header:
                table = _dotted(header[1])
                self.marks.setdefault(table, (number, 1))
            elif key:
                self.marks.setdefault(table + (key[2].strip("\"'"),), (number, len(key[1]) + 1))

    def at(self, parts: tuple[str, ...]) -> tuple[int, int]:
        """The line and column of a key, else of its nearest table written."""
        while parts and parts not in self.marks:
            parts = parts[:-1]
        return self.marks.get(parts, (1, 1))


def _dotted(header: str) -> tuple[str, ...]:
    return tuple(p.strip().strip("\"'") for p in re.findall(r"\"[^\"]*\"|'[^']*'|[^.]+", header))


class _Reader:
    """The checks and the resolution of one table's values; problems gathered, not raised one at a time."""

    def __init__(self, display: str, prefix: tuple[str, ...], lines: _Lines, root: Path, cwd: Path):
        self.display, self.prefix, self.lines, self.root, self.cwd = display, prefix, lines, root, cwd
        self.problems: list[Problem] = []

    def settings(self, table: dict[str, Any]) -> tuple[Setting, ...]:
        """Every key's setting, in the order written; unknown keys are problems."""
        found = []
        for key, value in table.items():
            if key == "pipelines":
                continue
            if key not in KEYS:
                self.problem((key,), SECRET if key == "database_url" else
                             f"unknown key {key!r}{_suggest(key, [*KEYS, 'pipelines'])}")
                continue
            resolved = self.value(key, KEYS[key], value)
            if resolved is not None:
                found.append(Setting(key, resolved, self.display, self.lines.at(self.prefix + (key,))[0]))
        return tuple(found)

    def value(self, key: str, kind: str, value: Any) -> Any:
        """A value resolved, or None after a problem."""
        expected = _EXPECTED[kind]
        if not _KIND_OK[kind](value):
            self.problem((key,), expected if kind == "env" else f"{expected}, {_got(value)}")
            return None
        if kind == "path":
            return self.path(value)
        if kind in ("paths", "words"):
            return tuple(self.path(v) for v in value) if kind == "paths" else tuple(value)
        return value

    def folders(self, table: Any) -> tuple[Folder, ...]:
        """The `[pipelines]` table: folder = definition file."""
        if not isinstance(table, dict):
            self.problem(("pipelines",), "expected a table of folder = \"definition file\"")
            return ()
        found = []
        for folder, definition in table.items():
            parts = ("pipelines", folder)
            if not isinstance(definition, str) or not definition:
                self.problem(parts, f"{_EXPECTED['path']}, {_got(definition)}")
            elif not (self.root / definition).is_file():
                self.problem(parts, f"pipeline definition file not found: {self.path(definition)}")
            else:
                found.append(Folder(Path(self.path(folder)), Path(self.path(definition)), self.where(parts)))
        return tuple(found)

    def path(self, text: str) -> str:
        """A path of the config (relative to its file), as seen from the working directory."""
        full = os.path.normpath(self.root / os.path.expanduser(text))
        return os.path.relpath(full, self.cwd)

    def where(self, parts: tuple[str, ...]) -> str:
        return f"{self.display}:{self.lines.at(self.prefix + parts)[0]}"

    def problem(self, parts: tuple[str, ...], message: str) -> None:
        line, col = self.lines.at(self.prefix + parts)
        self.problems.append(Problem(self.display, line, col, ".".join(self.prefix + parts), message))


def _strings(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)


_KIND_OK = {
    "paths": _strings,
    "words": lambda v: _strings(v) or v == [],
    "path": lambda v: isinstance(v, str) and bool(v),
    "env": lambda v: isinstance(v, str) and ENV_NAME.fullmatch(v) is not None,
    "parallel": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_PARALLEL,
}
_EXPECTED = {
    "paths": "expected a list of strings",
    "words": "expected a list of strings",
    "path": "expected a string (a file path)",
    "env": "expected the NAME of an environment variable holding the database URL (letters, digits and _), "
           "never the URL itself",
    "parallel": f"expected a whole number from 1 to {MAX_PARALLEL}",
}


def _got(value: Any) -> str:
    if isinstance(value, bool):
        return f"got {str(value).lower()}"
    if value == []:
        return "got an empty list"
    return f"got {value!r}" if isinstance(value, (str, int, float)) else f"got a {type(value).__name__}"


def _suggest(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f"; expected one of: {', '.join(candidates)}"

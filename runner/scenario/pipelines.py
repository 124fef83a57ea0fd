"""Which pipeline definition a scenario is read with, and why: its own `pipeline_file:`, else its folder's (the
project config's `[pipelines]`), else the run's (`--pipeline-file`, `YE_PIPELINE_FILE`, the project config's
`pipeline_file`), else the built-in one.

A suite may mix scenarios written for different definitions; each definition file is read once per loading.
The reason a definition is in force travels with it, so an unknown step can say how to choose another.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runner.definition import DEFAULT, Definition
from runner.errors import Problem, ScenarioError
from runner.scenario.yamlsource import Located

KEY = "pipeline_file"
HOW_TO_CHOOSE = "to use another: `pipeline_file: FILE` in the scenario, --pipeline-file FILE, or the project config"


@dataclass(frozen=True, slots=True)
class Folder:
    """A folder whose scenarios are written for one definition (the project config's `[pipelines]`)."""

    path: Path
    definition: Path
    at: str
    """Where the project config says so (`file:line`)."""


@dataclass(frozen=True, slots=True)
class InForce:
    """A pipeline definition and what chose it."""

    definition: Definition
    by: str = ""
    """`--pipeline-file`, `this scenario's pipeline_file`, ...; empty for the built-in default."""

    def hint(self) -> str:
        """The tail of an unknown step's message: the definition in force, and how to choose another."""
        which = "the built-in pipeline definition" if not self.by else \
            f"the pipeline definition {self.definition.source}, {self.by}"
        return f" (steps of {which}; {HOW_TO_CHOOSE})"


BUILT_IN = InForce(DEFAULT)


class Definitions:
    """One loading's definitions: the run's default, the folders', each file read once (a failure too) by
    `read_file` (the loader's `load_definition`)."""

    def __init__(self, read_file: Callable[[Path], Definition], default: Path | None = None,
                 by: str = "named by --pipeline-file", folders: tuple[Folder, ...] = ()):
        self._read_file = read_file
        self._read: dict[Path, Definition | ScenarioError] = {}
        self.folders = tuple(sorted(folders, key=lambda f: len(f.path.resolve().parts), reverse=True))
        self.default = BUILT_IN if default is None else InForce(self.read(default), by)

    def read(self, path: Path) -> Definition:
        """The definition in a file, read at first use; ScenarioError (every problem) when it is invalid."""
        key = path.resolve()
        if key not in self._read:
            try:
                self._read[key] = self._read_file(path)
            except ScenarioError as exc:
                self._read[key] = exc
        found = self._read[key]
        if isinstance(found, ScenarioError):
            raise found
        return found

    def for_file(self, file: str | Path) -> InForce:
        """The definition of a scenario file that names none: its deepest mapped folder's, else the default."""
        here = Path(file).resolve()
        for folder in self.folders:
            if here.is_relative_to(folder.path.resolve()):
                return InForce(self.read(folder.definition), f"named for {folder.path} by {folder.at}")
        return self.default

    def own(self, tree: Located, fallback: InForce) -> InForce:
        """The definition an instance names with `pipeline_file:` (relative to the file that wrote it), else
        `fallback`; ScenarioError located at the key when the file is missing or invalid."""
        entry = tree.value.get(KEY) if isinstance(tree.value, dict) else None
        if entry is None or not isinstance(entry[1].value, str) or not entry[1].value:
            return fallback  # absent, or a type error the schema reports
        node = entry[1]
        path = Path(os.path.normpath(Path(node.mark.file).parent / Path(node.value).expanduser()))

        def problem(message: str) -> Problem:
            return Problem(node.mark.file, node.mark.line, node.mark.col, f"$.{KEY}", message)

        if not path.is_file():
            raise ScenarioError([problem(f"pipeline definition file not found: {path}")])
        try:
            return InForce(self.read(path), "named by this scenario's pipeline_file")
        except ScenarioError as exc:
            raise ScenarioError(exc.problems + [problem(f"the pipeline definition {node.value} is invalid (its "
                                                        "problems are listed at its own lines)")]) from None

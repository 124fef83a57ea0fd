"""Loading and selection for every front end: `ye-run run`, `list`, `validate`, `pipeline` and the pytest plugin.

The definition in force and the `--var` values are read once. Every file is loaded and validated
before any is selected (an invalid file that is not selected still counts), and scenarios that
will run side by side are checked for literal rows they would both seed, all before a database
opens. What refuses a suite is kept as its error, not raised, so the session can hand it to every
reporter as its first event, as it hands them a scenario's verdict.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.definition import DEFAULT, Definition
from runner.errors import InputError, Interrupted, Problem, ScenarioError, YeRunError
from runner.scenario.model import Scenario
from runner.scenario.pipelines import Definitions, Folder
from runner.scenario.names import UniqueNames

INTERRUPTED = "interrupted before the run started (nothing was seeded)"


@dataclass(frozen=True, slots=True)
class Request:
    """What a front end asks for: the files, the definition and variables they are read with, and a selection."""

    paths: tuple[str, ...]
    pipeline_file: Path | None = None
    variables: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    keyword: str | None = None
    shard: str | None = None
    side_by_side: bool = False
    """The scenarios will run at once (-j N > 1): two that would seed one literal row are refused."""
    keep_going: bool = False
    """`run`: a file that fails to load is an error entry of its own and the others still run (a night is not
    stopped by one bad file), unless no file loaded at all (then the located messages are all there is to say);
    else (`list`, `validate`) it refuses the suite."""
    folders: tuple[Folder, ...] = ()
    """Folders whose scenarios are written for a definition of their own (the project config's `[pipelines]`)."""
    pipeline_by: str = "named by --pipeline-file"
    """What gave `pipeline_file`, for messages naming the definition in force."""


@dataclass(frozen=True, slots=True)
class Suite:
    """What a session runs: the selected scenarios, or the error that refused them all (invalid files, a refused
    selection, an interrupt while loading)."""

    scenarios: tuple[Scenario, ...] = ()
    loaded: int = 0
    """How many scenarios the files held, before selection."""
    error: YeRunError | None = None
    invalid: tuple[Problem, ...] = ()
    """With `keep_going`: the located problems of the files that failed to load (their scenarios do not run)."""


def suite(request: Request) -> Suite:
    """The suite a request selects; a YeRunError becomes its error (a KeyboardInterrupt is the caller's)."""
    try:
        loaded, invalid = load_valid(list(request.paths), request.pipeline_file, request.variables,
                                     definitions_in_force(request.pipeline_file, request.pipeline_by,
                                                          request.folders))
        if invalid and (not request.keep_going or not loaded):
            raise ScenarioError(invalid)
        chosen = choose(loaded, request.tags, request.skip_tags, request.keyword, request.shard,
                        required=not invalid)
    except YeRunError as exc:
        return Suite(error=exc)
    return dataclasses.replace(of(chosen, request.side_by_side, len(loaded)), invalid=tuple(invalid))


def of(scenarios: Sequence[Scenario], side_by_side: bool = False, loaded: int | None = None) -> Suite:
    """A suite of scenarios loaded already; refused when, side by side, two would seed one literal row."""
    count = len(scenarios) if loaded is None else loaded
    if side_by_side:
        clashes = isolation_clashes(scenarios)
        if clashes:
            return Suite(loaded=count, error=InputError("\n".join(line for _, line in clashes)))
    return Suite(tuple(scenarios), count)


def interrupted() -> Suite:
    """The suite of a run interrupted while it loaded: nothing run, nothing seeded, exit 130."""
    return Suite(error=Interrupted(INTERRUPTED))


def definitions_in_force(pipeline_file: Path | None = None, by: str = "named by --pipeline-file",
                         folders: tuple[Folder, ...] = ()) -> Definitions:
    """The definitions of one loading: the run's (read now: an invalid one refuses it), the folders', and those
    the scenarios name (each read once)."""
    from runner.scenario import loader

    return Definitions(loader.load_definition, pipeline_file, by, folders)


def definition(path: Path | None) -> Definition:
    """The pipeline definition in force: the file given, else the built-in default."""
    if path is None:
        return DEFAULT
    from runner.scenario import loader

    return loader.load_definition(path)


def parse_variables(given: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`--var NAME=VALUE` options as a mapping; InputError for a malformed one."""
    out = {}
    for item in given:
        name, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise InputError(f"--var {item!r}: write NAME=VALUE (NAME: letters, digits and _)")
        out[name] = value
    return out


class Loader:
    """One front end's reading of scenario files: the definition and the variables read once, then file by file."""

    def __init__(self, pipeline_file: Path | None = None, variables: tuple[str, ...] | list[str] = (),
                 definitions: Definitions | None = None):
        self.definitions = definitions or definitions_in_force(pipeline_file)
        self.definition = self.definitions.default.definition
        self.values = parse_variables(variables)
        self._names = UniqueNames()

    def instances(self, file: str | Path) -> list[Scenario]:
        """Every scenario (matrix instance) of one file; ScenarioError lists every problem in it."""
        from runner.scenario import loader

        return loader.load_instances(file, self.definitions.for_file(file), self.values, self.definitions)

    def unique(self, file: str | Path) -> list[Scenario]:
        """As `instances`, and a scenario whose name a file read before has is a problem at its `name:` line
        (validate and pytest read file by file)."""
        found = self.instances(file)
        twins = self._names.problems(found)
        if twins:
            raise ScenarioError(twins)
        return found


def load_all(paths: list[str], pipeline_file: Path | None, variables: tuple[str, ...] = (),
             definitions: Definitions | None = None) -> list[Scenario]:
    """Every scenario (every matrix instance) in `paths`, validated against the definition in force for it,
    variables resolved; ScenarioError lists every problem of every file at once (nothing is touched then)."""
    loaded, problems = load_valid(paths, pipeline_file, variables, definitions)
    if problems:
        raise ScenarioError(problems)
    return loaded


def load_valid(paths: list[str], pipeline_file: Path | None, variables: tuple[str, ...] = (),
               definitions: Definitions | None = None) -> tuple[list[Scenario], list[Problem]]:
    """Every scenario of the files that load, and every located problem of those that do not, file by file (the
    problems of a definition several files name, once)."""
    from runner.scenario import discover

    reader = Loader(pipeline_file, variables, definitions)
    loaded: list[Scenario] = []
    problems: dict[str, Problem] = {}
    for file in discover.scenario_files(paths):
        try:
            loaded.extend(reader.instances(file))
        except ScenarioError as exc:
            problems.update((str(p), p) for p in exc.problems)
    return loaded, list(problems.values())


def choose(loaded: list[Scenario], tags: tuple[str, ...], skip_tags: tuple[str, ...], keyword: str | None,
           shard: str | None, required: bool = True) -> list[Scenario]:
    """The selected scenarios (after validation of every file, so an unselected invalid file still counts);
    `required`: selecting none is refused (not when invalid files are the suite's entries)."""
    from runner.scenario import select

    chosen = select.select(loaded, select.Selection(tuple(tags), tuple(skip_tags), keyword,
                                                    select.parse_shard(shard) if shard else None))
    if not chosen and not shard and required:
        raise InputError(f"no scenario selected out of {len(loaded)} (check --tag, --skip-tag and -k)")
    return chosen


def isolation_clashes(scenarios: Sequence[Scenario]) -> list[tuple[Scenario, str]]:
    """Each scenario that would write a literal fixture row (no placeholder) an earlier one writes too, with the
    line saying so: side by side, the two would collide."""
    seen: dict[tuple[str, tuple], str] = {}  # type: ignore[type-arg]
    clashes = []
    for scenario in scenarios:
        for fixture in scenario.fixtures:
            for row in fixture.rows:
                if any(isinstance(value, str) and "${" in value for _, value in row):
                    continue
                key = (fixture.table, row)
                if key in seen and seen[key] != scenario.name:
                    clashes.append((scenario, f"{scenario.at('$.fixtures')}: a {fixture.table} row with no ${{...}} "
                                              f"placeholder is also seeded by scenario {seen[key]!r}; run them with "
                                              "-j 1, or make the row unique per job (e.g. ${job.id})"))
                seen.setdefault(key, scenario.name)
    return clashes

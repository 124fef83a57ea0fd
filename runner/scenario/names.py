"""One name, one scenario: reports (JUnit suites, HTML anchors, `compare`) tell scenarios apart by name.

Two scenarios of one name in a selection would merge into one suite or hide each other, so the
second is refused at its `name:` line, with the first one's place in the same message.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from runner.errors import Problem
from runner.scenario.model import Origin, Scenario


class UniqueNames:
    """The names met so far in one selection; checked file by file (validate, pytest) or all at once (select)."""

    def __init__(self) -> None:
        self._first: dict[str, Scenario] = {}

    def problems(self, scenarios: Iterable[Scenario]) -> list[Problem]:
        """A located problem for each scenario whose name an earlier one (here or before) already has."""
        found = []
        for scenario in scenarios:
            first = self._first.setdefault(scenario.name, scenario)
            if first is not scenario:
                found.append(_duplicate(scenario, first))
        return found


def duplicates(scenarios: Iterable[Scenario]) -> list[Problem]:
    """A located problem for each scenario whose name an earlier one in `scenarios` already has."""
    return UniqueNames().problems(scenarios)


def _duplicate(second: Scenario, first: Scenario) -> Problem:
    origin, own = _origin(second)
    where, theirs = _origin(first)
    return Problem(origin.file, origin.line, origin.col, "$.name",
                   f"scenario name {second.name!r}{own} is also the name of {where.file}:{where.line}:{where.col}"
                   f"{theirs}; names must be unique in a selection (reports tell scenarios apart by name)")


def _origin(scenario: Scenario) -> tuple[Origin, str]:
    """Where a scenario's name was written, and what to add when that place alone does not say which file."""
    origin = scenario.source.marks.get("$.name")
    if origin is None:
        return Origin(str(scenario.path), 1, 1), " (the file's name)"
    if os.path.normpath(origin.file) != os.path.normpath(str(scenario.path)):
        return origin, f" (of {scenario.path})"
    return origin, ""

"""How many connections a scenario holds at once: what the session's connection budget hands out."""

from __future__ import annotations

from runner.scenario.model import Scenario

RUN = 1
"""The run's own connection: seeding, the job rows, the registry, cleanup (held from start to verdict)."""
SESSION = 1
"""The session's one connection: it checks every scenario and reads the budget, then LISTENs for every
scenario (`observe.hub`); through it the gate looks at the server's connections while scenarios wait."""


def connections(scenario: Scenario, reference_pipeline: bool) -> int:
    """The most connections `scenario` opens at once (the session's shared LISTEN connection aside)."""
    total = RUN
    if scenario.expect.sql:
        total += 1  # SQL checks run on a read-only connection of their own
    if reference_pipeline and scenario.observe:
        total += 1 + scenario.reference_pipeline.slots  # its dispatcher's LISTEN connection and one per slot
    return total

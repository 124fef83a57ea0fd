"""The pipeline definition's seed rows on one database: which are seeded with each job, which are skipped.

A seed row is what a real job has beyond the core rows (the deployment's English ad copy). It is
seeded where the database has its table and skipped, with a note, where it has not; a table that
exists but cannot take the row (a missing column, a NOT NULL column left without a value) is a
refusal before anything is seeded, at the place the value was written (definition or scenario).
"""

from __future__ import annotations

import difflib

from runner.db import guard
from runner.db.catalog import Catalog, Table
from runner.definition import SeedRow
from runner.errors import GuardError, InputError
from runner.scenario.model import Fixture, Scenario
from runner.scenario.semantics import PLACEHOLDER


def to_seed(catalog: Catalog, scenario: Scenario) -> tuple[tuple[Fixture, ...], tuple[str, ...]]:
    """The seed rows this database takes, as fixtures, and a note for each one it has no table for."""
    rows: list[Fixture] = []
    notes: list[str] = []
    for row in scenario.seed_rows:
        if catalog.table(row.table) is None:
            notes.append(f"seed row {row.name} not seeded: the database has no table {row.table}")
        else:
            rows.append(Fixture(row.table, (row.values,)))
    return tuple(rows), tuple(notes)


def check(catalog: Catalog, scenario: Scenario) -> None:
    """Every seed row with a table can be written there; InputError naming where each bad value was written."""
    problems: list[str] = []
    for row in scenario.seed_rows:
        table = catalog.table(row.table)
        if table is not None:
            problems += _problems(row, table)
    if problems:
        raise InputError("\n".join(problems))


def _problems(row: SeedRow, table: Table) -> list[str]:
    leave_out = f" (or leave the row out: seed_rows: {{{row.name}: false}})"
    out = []
    for column, _ in row.values:
        if not table.has(column):
            close = difflib.get_close_matches(column, list(table.columns), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; it has: {', '.join(table.columns)}"
            out.append(f"{row.where(column)}: table {row.table} has no column {column!r}{hint}{leave_out}")
    given = {column for column, _ in row.values}
    for column in sorted(c.name for c in table.columns.values() if c.must_be_set and c.name not in given):
        out.append(f"{row.where()}: {row.table}.{column} is NOT NULL with no default; give seed row {row.name} a "
                   f"value for it{leave_out}")
    return out


def check_tenants(scenario: Scenario, tenant: str, pattern: str | None, force: bool) -> None:
    """A seed row naming a tenant is held to the tenant guard, like the scenario's own tenant."""
    for row in scenario.seed_rows:
        value = dict(row.values).get("tenant_id")
        if value is None:
            continue
        known = {"tenant.id": tenant, "scenario.ad_copy": scenario.ad_copy}
        named = PLACEHOLDER.sub(lambda m: known.get(m.group(1), ""), str(value))
        try:
            guard.check_tenant(named, pattern, force, action="seed a row for")
        except GuardError as exc:
            raise GuardError(f"{row.where('tenant_id')}: {exc}") from None

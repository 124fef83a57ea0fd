"""Selection that needs what past runs left: `--last-failed` and `--shard K/N` balanced by past durations.

Both read the run registry (or a JSON report the front end read for them), so they run once the
session's database is open, before the preflight. Tags and `-k` chose already; these narrow that
choice. The split of a shard is computed only from runs that finished before the current UTC day
on the database's clock, so N machines starting the same night at different moments read the
same durations and deal the same shards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import psycopg2

from runner.db import catalog, failures, registry, requirements
from runner.db.connect import Database
from runner.errors import InputError
from runner.scenario import select
from runner.scenario.model import Scenario

NO_REGISTRY = ("--last-failed reads the run registry, which this database does not have (ye-run db init installs "
               "it); or name a JSON report of the last run: --last-failed-from REPORT.json")


@dataclass(frozen=True, slots=True)
class Narrowing:
    """What the front end asked for beyond tags and -k; empty: every selected scenario runs."""

    last_failed: bool = False
    failed: frozenset[str] | None = None
    """The scenario names (and invalid files) that failed in a JSON report; None: the registry says."""
    shard: tuple[int, int] | None = None
    durations: Mapping[str, float] | None = None
    """Past durations by scenario name, from a JSON report; None: the registry's."""
    durations_from: str = "the run registry"

    @property
    def needs_database(self) -> bool:
        """Whether the registry is read (else the answer is known without a database)."""
        return (self.last_failed and self.failed is None) or (self.shard is not None and self.durations is None)


@dataclass(frozen=True, slots=True)
class Shard:
    """Which shard a session ran and how it was dealt: the JSON report keeps it, so merging N reports can check
    that every selected scenario ran exactly once."""

    index: int
    count: int
    balanced_by: str
    """`durations (<source>)` or `count`."""
    selection: tuple[str, ...]
    """Every scenario of the whole selection, before sharding."""


@dataclass
class Narrowed:
    """The scenarios to run, what to say about the narrowing, and the shard, if any."""

    scenarios: list[Scenario]
    notes: list[str] = field(default_factory=list)
    shard: Shard | None = None


def narrow(scenarios: Sequence[Scenario], database: Database | None, narrowing: Narrowing) -> Narrowed:
    """The selected scenarios narrowed to last time's failures, then to one shard; InputError when the registry
    is needed and absent for --last-failed."""
    kept = Narrowed(list(scenarios))
    if narrowing.last_failed:
        kept = _last_failed(kept.scenarios, database, narrowing)
    if narrowing.shard is not None:
        kept = _shard(kept, database, narrowing)
    return kept


def _last_failed(scenarios: list[Scenario], database: Database | None, narrowing: Narrowing) -> Narrowed:
    if narrowing.failed is not None:
        failed, source = narrowing.failed, "the report"
    else:
        failed, source = _with_registry(database, lambda conn: registry.last_failed(conn, _names(scenarios)),
                                        required=True), "the run registry"
    kept = [s for s in scenarios if s.name in failed or str(s.path) in failed]
    if not kept:
        return Narrowed([], [f"--last-failed: no selected scenario failed in its last run ({source}): nothing to "
                             "run"])
    return Narrowed(kept, [f"--last-failed: {len(kept)} of {len(scenarios)} selected scenario(s) failed in their "
                           f"last run ({source})"])


def _shard(kept: Narrowed, database: Database | None, narrowing: Narrowing) -> Narrowed:
    assert narrowing.shard is not None
    k, n = narrowing.shard
    durations = narrowing.durations
    if durations is None:
        durations = _with_registry(database, lambda conn: registry.durations(conn, _names(kept.scenarios)),
                                   required=False) or {}
    known = {name: seconds for name, seconds in durations.items() if name in _names(kept.scenarios)}
    by = f"durations ({narrowing.durations_from})" if known else "count"
    chosen = select.balanced(kept.scenarios, k, n, known)
    note = (f"--shard {k}/{n}: {len(chosen)} of {len(kept.scenarios)} scenario(s), split by {by}"
            + ("" if known else " (no past durations: each scenario counts the same)"))
    return Narrowed(chosen, kept.notes + [note], Shard(k, n, by, tuple(s.name for s in kept.scenarios)))


def _names(scenarios: Sequence[Scenario]) -> list[str]:
    return [s.name for s in scenarios]


def _with_registry(database: Database | None, read, required: bool):  # type: ignore[no-untyped-def]
    """`read(conn)` on a connection of its own when the registry is installed; when it is not (or cannot be
    read), InputError if `required`, else None (the caller falls back)."""
    if database is None:
        if required:
            raise InputError(NO_REGISTRY)
        return None
    conn = database.connect("ye-run selection", autocommit=True)
    try:
        if requirements.registry_available(catalog.read(conn)):
            return read(conn)
        if required:
            raise InputError(NO_REGISTRY)
        return None
    except psycopg2.Error as exc:
        if required:
            raise failures.describe(exc, "reading the run registry") from None
        return None
    finally:
        conn.close()

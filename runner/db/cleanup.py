"""Deleting what a run (or a test tenant) created, and every row that references it.

The rows to delete are found from the catalog's foreign keys, breadth first from the seeded
rows, and locked as they are found (a pipeline still writing cannot move them). Before
anything is deleted, the set is checked: it must not reach another tenant's rows or another
run's jobs. Deletion runs children first, in one transaction; `--dry-run` rolls it back.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from runner.db import failures, registry as registry_module
from runner.db.catalog import Catalog
from runner.db.requirements import registry_available
from runner.errors import GuardError, InfrastructureError

IMPLICIT = (
    ("jobs_variants", ("job_id",), "jobs", ("job_id",)),
    ("job_inputs", ("job_id",), "jobs", ("job_id",)),
    ("image_assets", ("job_id",), "jobs", ("job_id",)),
    ("ye_run_history", ("job_id",), "jobs", ("job_id",)),
)
"""Relations followed even where a deployment declares no foreign key for them."""
LOCK_TIMEOUT = "SET LOCAL lock_timeout = '10s'"
"""Another session holding the rows (a pipeline stage, a person in psql) fails cleanup in 10 s, rolled back,
instead of hanging it (and every signal with it)."""


@dataclass
class CleanupResult:
    counts: dict[str, int]
    dry_run: bool
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def cleanup_run(conn: psycopg2.extensions.connection, catalog: Catalog, record: registry_module.RunRecord,
                dry_run: bool = False, untrusted: bool = False) -> CleanupResult:
    """Delete a run's rows and their dependents; never another run's or tenant's rows.

    `untrusted`: the record comes from a file anyone could have written (`--report`), so every row it
    names must show, by its tenant_id or job_id, that it belongs to the run.
    """
    if untrusted:
        _check_provable(catalog, record)
    try:
        with conn.cursor() as cur:
            cur.execute(LOCK_TIMEOUT)
            closure = _Closure(cur, catalog)
            for table, keys in record.rows().items():
                closure.add_keys(table, keys)
            closure.expand()
            closure.guard(record.tenant_id, set(record.job_ids))
            notes = []
            if record.tenant_created:
                notes.append(_maybe_tenant(cur, catalog, closure, record.tenant_id))
            result = _delete(cur, closure, dry_run, [n for n in notes if n])
            if registry_available(catalog) and not dry_run:
                registry_module.mark_cleaned(cur, record.run_id)
        _finish(conn, dry_run)
        return result
    except psycopg2.Error as exc:
        conn.rollback()
        raise _failed(exc) from None


def _check_provable(catalog: Catalog, record: registry_module.RunRecord) -> None:
    unprovable = sorted(table for table in record.rows()
                        if not (catalog.has(table, "tenant_id") or catalog.has(table, "job_id")))
    if unprovable:
        raise GuardError(f"refusing to clean up from a report: it names rows of {', '.join(unprovable)}, which have "
                         "neither tenant_id nor job_id, so nothing shows they belong to the run (use --run with the "
                         "run registry, or --tenant)")


def cleanup_tenant(conn: psycopg2.extensions.connection, catalog: Catalog, tenant_id: str,
                   dry_run: bool = False) -> CleanupResult:
    """Delete every job, asset and tenant row of a test tenant, and everything that references them."""
    try:
        with conn.cursor() as cur:
            cur.execute(LOCK_TIMEOUT)
            closure = _Closure(cur, catalog)
            for table in ("jobs", "image_assets", "tenants"):
                if catalog.has(table, "tenant_id"):
                    closure.add_where(table, sql.SQL("{} = %s").format(sql.Identifier("tenant_id")), [tenant_id])
            closure.expand()
            closure.guard(tenant_id, set(closure.values("jobs", "job_id")))
            result = _delete(cur, closure, dry_run, [])
            if registry_available(catalog) and not dry_run:
                cur.execute("UPDATE ye_run_runs SET cleaned_at = now() WHERE tenant_id = %s AND cleaned_at IS NULL",
                            (tenant_id,))
        _finish(conn, dry_run)
        return result
    except psycopg2.Error as exc:
        conn.rollback()
        raise _failed(exc) from None


def _failed(exc: psycopg2.Error) -> InfrastructureError:
    if failures.lost(exc):  # rolled back with the connection: the caller may try again once the server is back
        return failures.ConnectionLost(f"{failures.describe(exc, 'cleaning up')} (rolled back)")
    if isinstance(exc, psycopg2.errors.LockNotAvailable):
        return InfrastructureError("cleanup failed and was rolled back: another session holds a lock on the rows "
                                   "to delete (waited 10 s); try again when it is done")
    return InfrastructureError(f"cleanup failed and was rolled back: {exc.diag.message_primary or exc}")


def _finish(conn: psycopg2.extensions.connection, dry_run: bool) -> None:
    if dry_run:
        conn.rollback()
    else:
        conn.commit()


class _Closure:
    """Rows to delete, per table, by ctid (stable: every row found is locked FOR UPDATE)."""

    def __init__(self, cur: psycopg2.extensions.cursor, catalog: Catalog):
        self.cur = cur
        self.catalog = catalog
        self.rows: dict[str, set[str]] = {}
        self.pending: deque[tuple[str, list[str]]] = deque()

    def add_keys(self, table: str, keys: list[tuple]) -> None:
        found = self.catalog.table(table)
        if found is None or not found.primary_key or not keys:
            return
        columns = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in found.primary_key)
        tuples = sql.SQL(", ").join(sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(k)))
                                    for k in keys)
        where = sql.SQL("({}) IN ({})").format(columns, tuples)
        self.add_where(table, where, [str(v) for key in keys for v in key])

    def add_where(self, table: str, where: sql.Composable, params: list) -> None:
        query = sql.SQL("SELECT ctid::text FROM {t} WHERE {w} FOR UPDATE").format(t=sql.Identifier(table), w=where)
        self.cur.execute(query, params)
        self._record(table, [row[0] for row in self.cur.fetchall()])

    def _record(self, table: str, ctids: list[str]) -> None:
        known = self.rows.setdefault(table, set())
        new = [c for c in ctids if c not in known]
        if new:
            known.update(new)
            self.pending.append((table, new))

    def expand(self) -> None:
        while self.pending:
            parent, ctids = self.pending.popleft()
            for child, columns, ref_columns in self._relations(parent):
                self._record(child, self._children(child, columns, parent, ref_columns, ctids))

    def _relations(self, parent: str) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
        declared = [(fk.table, fk.columns, fk.ref_columns) for fk in self.catalog.referencing(parent)]
        implicit = [
            (child, cols, ref_cols) for child, cols, ref, ref_cols in IMPLICIT
            if ref == parent and all(self.catalog.has(child, c) for c in cols)
            and (child, cols, ref_cols) not in declared
        ]
        return declared + implicit

    def _children(self, child: str, columns: tuple[str, ...], parent: str, ref_columns: tuple[str, ...],
                  ctids: list[str]) -> list[str]:
        join = sql.SQL(" AND ").join(
            sql.SQL("c.{} = p.{}").format(sql.Identifier(a), sql.Identifier(b)) for a, b in zip(columns, ref_columns))
        query = sql.SQL("SELECT c.ctid::text FROM {child} c JOIN {parent} p ON {join} "
                        "WHERE p.ctid = ANY(%s::tid[]) FOR UPDATE OF c").format(
            child=sql.Identifier(child), parent=sql.Identifier(parent), join=join)
        self.cur.execute(query, (ctids,))
        return [row[0] for row in self.cur.fetchall()]

    def values(self, table: str, column: str) -> list[str]:
        if not self.rows.get(table) or not self.catalog.has(table, column):
            return []
        self.cur.execute(sql.SQL("SELECT DISTINCT {c}::text FROM {t} WHERE ctid = ANY(%s::tid[])").format(
            c=sql.Identifier(column), t=sql.Identifier(table)), (list(self.rows[table]),))
        return [row[0] for row in self.cur.fetchall() if row[0] is not None]

    def guard(self, tenant_id: str, own_jobs: set[str]) -> None:
        """Refuse when the rows reach another tenant's rows or jobs that are not ours."""
        problems = []
        for table in sorted(self.rows):
            others = sorted(set(self.values(table, "tenant_id")) - {tenant_id})
            if others:
                problems.append(f"{table} rows of tenant(s) {', '.join(others)}")
            foreign_jobs = sorted(set(self.values(table, "job_id")) - own_jobs)
            if foreign_jobs:
                problems.append(f"{table} rows of {len(foreign_jobs)} other job(s) (e.g. {foreign_jobs[0]})")
        if problems:
            raise GuardError("refusing to clean up: the rows to delete reach rows that are not this run's: "
                             + "; ".join(problems))


def _maybe_tenant(cur: psycopg2.extensions.cursor, catalog: Catalog, closure: _Closure, tenant_id: str) -> str:
    """Add the run's tenant row when nothing outside the run still refers to it."""
    if not catalog.has("tenants", "tenant_id"):
        return ""
    probe = _Closure(cur, catalog)
    probe.add_where("tenants", sql.SQL("tenant_id = %s"), [tenant_id])
    probe.expand()
    outside = {t: ctids - closure.rows.get(t, set()) for t, ctids in probe.rows.items() if t != "tenants"}
    still_used = {t: len(c) for t, c in outside.items() if c}
    if still_used:
        uses = ", ".join(f"{n} {t}" for t, n in sorted(still_used.items()))
        return f"kept tenant {tenant_id}: still referenced by {uses}"
    closure.rows.setdefault("tenants", set()).update(probe.rows.get("tenants", set()))
    return ""


def _delete(cur: psycopg2.extensions.cursor, closure: _Closure, dry_run: bool, notes: list[str]) -> CleanupResult:
    order, cyclic = _delete_order(closure.catalog, [t for t, rows in closure.rows.items() if rows])
    if cyclic:
        cur.execute("SET CONSTRAINTS ALL DEFERRED")
    counts: dict[str, int] = {}
    for table in order:
        cur.execute(sql.SQL("DELETE FROM {} WHERE ctid = ANY(%s::tid[])").format(sql.Identifier(table)),
                    (list(closure.rows[table]),))
        counts[table] = cur.rowcount
    return CleanupResult(counts, dry_run, notes)


def _delete_order(catalog: Catalog, tables: list[str]) -> tuple[list[str], bool]:
    """Children before parents (Kahn's algorithm); True when a cycle forced an arbitrary order."""
    edges: set[tuple[str, str]] = set()
    for fk in catalog.foreign_keys:
        if fk.table in tables and fk.ref_table in tables and fk.table != fk.ref_table:
            edges.add((fk.table, fk.ref_table))
    for child, _, parent, _ in IMPLICIT:
        if child in tables and parent in tables:
            edges.add((child, parent))
    remaining = sorted(tables)
    order: list[str] = []
    while remaining:
        free = [t for t in remaining if not any(parent == t and child in remaining for child, parent in edges)]
        if not free:
            return order + remaining, True
        order.extend(free)
        remaining = [t for t in remaining if t not in free]
    return order, False


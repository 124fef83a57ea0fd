"""Deleting what a run (or a test tenant) created, and every row that references it.

Only a run that has finished (or is proven gone) is cleaned by anyone but itself: its advisory
lock and its owner say so (`liveness`), and a live run is refused whatever the flags. The rows to
delete are found from the catalog's foreign keys, breadth first from the seeded rows, and locked
as they are found (a pipeline still writing cannot move them); rows outside that set are only
read, never locked. Before anything is deleted, the set is checked: it must not reach another
tenant's rows or another run's jobs. Deletion runs children first, in one transaction;
`--dry-run` rolls it back.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from runner.db import failures, liveness, registry as registry_module
from runner.db.catalog import Catalog
from runner.db.requirements import registry_available
from runner.errors import GuardError, InfrastructureError


FORCEABLE = frozenset({liveness.State.RECENT, liveness.State.UNKNOWN, liveness.State.PENDING})
"""States --force may override: the cleaner cannot tell, or accepts the pipeline's leftovers; never a live run."""


class LiveRun(GuardError):
    """A cleaner met a run that has not finished: its rows are not touched (never overridden for a live run)."""

    def __init__(self, run_id: str, status: liveness.Status):
        self.run_id = run_id
        self.status = status
        super().__init__(f"run {run_id}: it has not finished ({status})")

IMPLICIT = (
    ("jobs_variants", ("job_id",), "jobs", ("job_id",)),
    ("job_inputs", ("job_id",), "jobs", ("job_id",)),
    ("image_assets", ("job_id",), "jobs", ("job_id",)),
    ("ye_run_history", ("job_id",), "jobs", ("job_id",)),
)
"""Relations followed even where a deployment declares no foreign key for them."""
LOCK_TIMEOUT = "SET LOCAL lock_timeout = '10s'; SET LOCAL application_name = 'ye-run cleanup'"
"""Another session holding the rows (a pipeline stage, a person in psql) fails cleanup in 10 s, rolled back,
instead of hanging it (and every signal with it). The name shows a DBA what the run's connection is doing."""


@dataclass
class CleanupResult:
    counts: dict[str, int]
    dry_run: bool
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def cleanup_run(conn: psycopg2.extensions.connection, catalog: Catalog, record: registry_module.RunRecord,
                dry_run: bool = False, untrusted: bool = False, own: bool = False,
                force: bool = False) -> CleanupResult:
    """Delete a run's rows and their dependents; never another run's or tenant's rows, never a live run's.

    `own`: the run cleans up after itself (it holds its own lock). Otherwise the run must have finished or be
    proven gone; `force` accepts a run whose state cannot be told (an older ye-run's, or one on another host seen
    recently), never one whose lock is held or whose process is alive. `untrusted`: the record comes from a file
    anyone could have written (`--report`), so every row it names must show, by a tenant_id or job_id that is
    not NULL, that it belongs to the run.
    """
    if untrusted:
        _check_provable(catalog, record)
    try:
        with conn.cursor() as cur:
            cur.execute(LOCK_TIMEOUT)
            if not own:
                ensure_finished(cur, catalog, record.run_id, force)
            if untrusted:
                if not liveness.try_tenant(cur, record.tenant_id):  # a made-up run id proves nothing of a live run
                    raise LiveRun(record.run_id, liveness.Status(liveness.State.RUNNING,
                                                                 f"a run on tenant {record.tenant_id} is going"))
                _prove_rows(cur, catalog, record)
            closure = _Closure(cur, catalog)
            for table, keys in record.rows().items():
                closure.add_keys(table, keys)
            closure.expand()
            closure.guard(record.tenant_id, set(record.job_ids))
            notes = []
            if record.tenant_created or _tenant_left_by_a_run(cur, catalog, record.tenant_id):
                notes.append(_maybe_tenant(cur, catalog, closure, record.tenant_id))
            result = _delete(cur, closure, dry_run, [n for n in notes if n])
            if registry_available(catalog) and not dry_run:
                registry_module.mark_cleaned(  # an older registry has no rows_deleted column
                    cur, record.run_id, result.total if catalog.has("ye_run_runs", "rows_deleted") else None)
        _finish(conn, dry_run)
        return result
    except psycopg2.Error as exc:
        conn.rollback()
        raise _failed(exc) from None


def ensure_finished(cur: psycopg2.extensions.cursor, catalog: Catalog, run_id: str, force: bool) -> None:
    """Hold the run's lock for this transaction (so it cannot come back mid-delete), and refuse a run that is
    not finished; raises LiveRun."""
    if liveness.held_here(cur, run_id):
        return  # this session is the run
    if not liveness.try_run(cur, run_id):
        raise LiveRun(run_id, liveness.Status(liveness.State.RUNNING, "its process holds the run's lock"))
    if not registry_available(catalog):
        return
    status = liveness.statuses(cur, [run_id]).get(run_id)
    if status is None or status.state.cleanable:
        return
    if force and status.state in FORCEABLE:
        return
    raise LiveRun(run_id, status)


def _ensure_tenant_idle(cur: psycopg2.extensions.cursor, catalog: Catalog, tenant_id: str, force: bool) -> None:
    """No live run on the tenant: none holds it (a run holds its tenant from registration to verdict), and the
    registry knows of none that has not finished (one reconnecting holds nothing for a moment)."""
    if not liveness.try_tenant(cur, tenant_id):
        raise GuardError(f"refusing to clean up tenant {tenant_id}: a run on it is still going (it holds the "
                         "tenant); nothing was deleted; try again when it has finished")
    if not registry_available(catalog):
        return
    cur.execute("SELECT run_id FROM ye_run_runs WHERE tenant_id = %s AND finished_at IS NULL AND cleaned_at IS NULL",
                (tenant_id,))
    found = liveness.statuses(cur, [row[0] for row in cur.fetchall()])
    live = [(run_id, status) for run_id, status in sorted(found.items()) if not status.state.cleanable
            and not (force and status.state in FORCEABLE)]
    if live:
        runs = "; ".join(f"run {run_id} ({status})" for run_id, status in live)
        raise GuardError(f"refusing to clean up tenant {tenant_id}: {runs}; nothing was deleted")


def _prove_rows(cur: psycopg2.extensions.cursor, catalog: Catalog, record: registry_module.RunRecord) -> None:
    """Every row a report names must carry the run's tenant, or one of the run's jobs that does: NULL proves
    nothing, so a row with neither is refused (and so is the whole cleanup)."""
    jobs = _owned_jobs(cur, catalog, record)
    refused = []
    for table, keys in sorted(record.rows().items()):
        found = catalog.table(table)
        if found is None or not found.primary_key or not keys:
            continue
        columns = [c for c in ("tenant_id", "job_id") if found.has(c)]
        select = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns)
        cur.execute(sql.SQL("SELECT {s} FROM {t} WHERE {w}").format(s=select, t=sql.Identifier(table),
                                                                     w=_keys_where(found.primary_key, keys)),
                    [str(v) for key in keys for v in key])
        for row in cur.fetchall():
            values = dict(zip(columns, row))
            if values.get("tenant_id") != record.tenant_id and values.get("job_id") not in jobs:
                refused.append(table)
                break
    if refused:
        raise GuardError(f"refusing to clean up from a report: it names rows of {', '.join(refused)} that do not "
                         f"show they belong to the run (tenant_id is not {record.tenant_id!r} and job_id is not "
                         "one of its jobs; NULL proves nothing); nothing was deleted")


def _owned_jobs(cur: psycopg2.extensions.cursor, catalog: Catalog, record: registry_module.RunRecord) -> set[str]:
    """The report's jobs that really are the run's tenant's."""
    ids = record.job_ids
    if not ids or not catalog.has("jobs", "tenant_id"):
        return set()
    cur.execute("SELECT job_id::text FROM jobs WHERE job_id::text = ANY(%s) AND tenant_id = %s",
                (ids, record.tenant_id))
    return {row[0] for row in cur.fetchall()}


def _keys_where(primary_key: tuple[str, ...], keys: list[tuple]) -> sql.Composable:
    columns = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in primary_key)
    tuples = sql.SQL(", ").join(sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(k)))
                                for k in keys)
    return sql.SQL("({}) IN ({})").format(columns, tuples)


def _check_provable(catalog: Catalog, record: registry_module.RunRecord) -> None:
    own = sorted(table for table in record.rows() if table.startswith("ye_run_"))
    if own:
        raise GuardError(f"refusing to clean up from a report: it names ye-run's own tables ({', '.join(own)}); a "
                         "run's rows are in the pipeline's tables, and its registry entry is not a report's to delete")
    unprovable = sorted(table for table in record.rows()
                        if not (catalog.has(table, "tenant_id") or catalog.has(table, "job_id")))
    if unprovable:
        raise GuardError(f"refusing to clean up from a report: it names rows of {', '.join(unprovable)}, which have "
                         "neither tenant_id nor job_id, so nothing shows they belong to the run (use --run with the "
                         "run registry, or --tenant)")


def cleanup_tenant(conn: psycopg2.extensions.connection, catalog: Catalog, tenant_id: str,
                   dry_run: bool = False, force: bool = False) -> CleanupResult:
    """Delete every job, asset and tenant row of a test tenant, and everything that references them; refused
    while a run on the tenant has not finished."""
    try:
        with conn.cursor() as cur:
            cur.execute(LOCK_TIMEOUT)
            _ensure_tenant_idle(cur, catalog, tenant_id, force)
            closure = _Closure(cur, catalog)
            for table in ("jobs", "image_assets", "tenants"):
                if catalog.has(table, "tenant_id"):
                    closure.add_where(table, sql.SQL("{} = %s").format(sql.Identifier("tenant_id")), [tenant_id])
            closure.expand()
            closure.guard(tenant_id, set(closure.values(("job_id",)).get(("jobs", "job_id"), [])))
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
        self.add_where(table, _keys_where(found.primary_key, keys), [str(v) for key in keys for v in key])

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

    def values(self, columns: tuple[str, ...]) -> dict[tuple[str, str], list[str]]:
        """The distinct non-NULL values of these columns in the rows to delete, by (table, column): one query for
        every table, so guarding costs one round trip however many tables the rows reach."""
        parts: list[sql.Composable] = []
        params: list[Any] = []
        for table in sorted(self.rows):
            for column in columns:
                if self.rows[table] and self.catalog.has(table, column):
                    parts.append(sql.SQL("SELECT DISTINCT %s, %s, {c}::text FROM {t} WHERE ctid = ANY(%s::tid[])").format(
                        c=sql.Identifier(column), t=sql.Identifier(table)))
                    params += [table, column, list(self.rows[table])]
        if not parts:
            return {}
        self.cur.execute(sql.SQL(" UNION ALL ").join(parts), params)
        found: dict[tuple[str, str], list[str]] = {}
        for table, column, value in self.cur.fetchall():
            if value is not None:
                found.setdefault((table, column), []).append(value)
        return found

    def guard(self, tenant_id: str, own_jobs: set[str]) -> None:
        """Refuse when the rows reach another tenant's rows or jobs that are not ours."""
        problems = []
        found = self.values(("tenant_id", "job_id"))
        for table in sorted(self.rows):
            others = sorted(set(found.get((table, "tenant_id"), [])) - {tenant_id})
            if others:
                problems.append(f"{table} rows of tenant(s) {', '.join(others)}")
            foreign_jobs = sorted(set(found.get((table, "job_id"), [])) - own_jobs)
            if foreign_jobs:
                problems.append(f"{table} rows of {len(foreign_jobs)} other job(s) (e.g. {foreign_jobs[0]})")
        if problems:
            raise GuardError("refusing to clean up: the rows to delete reach rows that are not this run's: "
                             + "; ".join(problems))


def _tenant_left_by_a_run(cur: psycopg2.extensions.cursor, catalog: Catalog, tenant_id: str) -> bool:
    """Whether a ye-run run created this tenant (and, finding it in use, left it): the last run on it removes it
    once nothing uses it any more, so a shared test tenant does not outlive its runs."""
    if not registry_available(catalog):
        return False
    cur.execute("SELECT EXISTS (SELECT 1 FROM ye_run_runs WHERE tenant_id = %s AND tenant_created)", (tenant_id,))
    return bool(cur.fetchone()[0])


def _maybe_tenant(cur: psycopg2.extensions.cursor, catalog: Catalog, closure: _Closure, tenant_id: str) -> str:
    """Add the run's tenant row when no live run holds the tenant and nothing outside the run refers to it.

    Only the tenant row (the run's own: it created it) is locked; other rows are only read, so this can never
    deadlock with another run or the pipeline working on the same tenant.
    """
    if not catalog.has("tenants", "tenant_id"):
        return ""
    if not liveness.try_tenant(cur, tenant_id):
        return f"kept tenant {tenant_id}: another run is using it"
    cur.execute("SELECT ctid::text FROM tenants WHERE tenant_id = %s FOR UPDATE", (tenant_id,))
    mine = [row[0] for row in cur.fetchall()]
    users = _tenant_users(cur, catalog, closure, tenant_id)
    if users:
        return f"kept tenant {tenant_id}: still referenced by rows of {', '.join(users)}"
    closure.rows.setdefault("tenants", set()).update(mine)
    return ""


def _tenant_users(cur: psycopg2.extensions.cursor, catalog: Catalog, closure: _Closure, tenant_id: str) -> list[str]:
    """Tables with rows outside the closure that name the tenant (by foreign key or a tenant_id column)."""
    checks: list[tuple[str, sql.Composable]] = []
    for fk in catalog.referencing("tenants"):
        join = sql.SQL(" AND ").join(sql.SQL("c.{} = p.{}").format(sql.Identifier(a), sql.Identifier(b))
                                     for a, b in zip(fk.columns, fk.ref_columns))
        checks.append((fk.table, sql.SQL("FROM {c} c JOIN tenants p ON {j} WHERE p.tenant_id = %s").format(
            c=sql.Identifier(fk.table), j=join)))
    declared = {fk.table for fk in catalog.referencing("tenants")}
    for table in sorted(catalog.tables):
        if table not in declared | {"tenants", "ye_run_runs"} and catalog.has(table, "tenant_id"):
            checks.append((table, sql.SQL("FROM {c} c WHERE c.tenant_id::text = %s").format(c=sql.Identifier(table))))
    if not checks:
        return []
    cur.execute(sql.SQL("SELECT ARRAY[{}]").format(sql.SQL(", ").join(
        sql.SQL("EXISTS (SELECT 1 {s} AND NOT c.ctid = ANY(%s::tid[]))").format(s=source) for _, source in checks)),
        [p for table, _ in checks for p in (tenant_id, list(closure.rows.get(table, set())))])
    used = cur.fetchone()[0]
    return sorted({table for (table, _), hit in zip(checks, used) if hit})


def _delete(cur: psycopg2.extensions.cursor, closure: _Closure, dry_run: bool, notes: list[str]) -> CleanupResult:
    order, cyclic = _delete_order(closure.catalog, [t for t, rows in closure.rows.items() if rows])
    if cyclic:
        cur.execute("SET CONSTRAINTS ALL DEFERRED")
    delete = sql.SQL("DELETE FROM {} WHERE ctid = ANY(%s::tid[])")
    if cyclic:  # an arbitrary order: a DELETE may cascade to rows listed later, so each counts what it removed
        counts: dict[str, int] = {}
        for table in order:
            cur.execute(delete.format(sql.Identifier(table)), (list(closure.rows[table]),))
            counts[table] = cur.rowcount
        return CleanupResult(counts, dry_run, notes)
    if order:  # children first, all in one message: every row is locked FOR UPDATE, so each DELETE removes its own
        cur.execute(sql.SQL("; ").join(delete.format(sql.Identifier(t)) for t in order),
                    [list(closure.rows[t]) for t in order])
    return CleanupResult({table: len(closure.rows[table]) for table in order}, dry_run, notes)


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


"""`ye-run db init`, `ye-run db check` and `ye-run cleanup`."""

from __future__ import annotations

import contextlib
import difflib
import re
from pathlib import Path

import click

from runner.cli import options
from runner.cli.common import handle_errors
from runner.db import catalog, cleanup as cleanup_module, guard, registry, requirements, schema
from runner.db.target import open_database
from runner import durations
from runner.errors import GuardError, InputError, SchemaMissingError
from runner.report import table


@click.group()
def db() -> None:
    """Install or check what ye-run needs in a database."""


@db.command("init")
@options.database_url
@click.option("--runner-only", is_flag=True,
              help="Install only ye-run's own objects (history, registry), never the pipeline tables.")
def db_init(database_url: str | None, runner_only: bool) -> None:
    """Install the reference schema and ye-run's history and registry, idempotently.

    Tables that exist are never altered: against a real deployment (its pipeline tables
    exist), only ye-run's own ye_run_* objects are added.
    """
    handle_errors(_db_init)(database_url, runner_only)


def _db_init(database_url: str | None, runner_only: bool) -> None:
    with open_database(database_url) as database, contextlib.closing(database.connect("ye-run db init")) as conn:
        result = schema.install(conn, with_reference=not runner_only)
        click.echo(f"{database.display}: {result.note}")


@db.command("check")
@options.database_url
def db_check(database_url: str | None) -> None:
    """Report whether a database has what ye-run needs, and what is missing; changes nothing.

    Exit 0 when everything required is there, 3 when something required is missing.
    """
    handle_errors(_db_check)(database_url)


def _db_check(database_url: str | None) -> None:
    with open_database(database_url) as database, contextlib.closing(database.connect("ye-run db check")) as conn:
        found = requirements.findings(catalog.read(conn)) + [requirements.privileges(conn)]
    click.echo(database.display)
    for item in found:
        mark = "ok" if item.ok else ("MISSING" if item.required else "absent")
        click.echo(f"  {mark:8} {item.what}{': ' + item.detail if item.detail else ''}")
    missing = [f.what for f in found if f.required and not f.ok]
    if missing:
        raise SchemaMissingError(f"missing what ye-run needs: {', '.join(missing)}")


@db.command("describe")
@click.argument("tables", nargs=-1, metavar="[TABLE]...")
@options.database_url
def db_describe(tables: tuple[str, ...], database_url: str | None) -> None:
    """Show what tables hold: columns, types, NOT NULL, defaults, keys, foreign keys; changes nothing.

    With no TABLE, the tables a scenario deals with (the seeded ones, ye-run's own, and every
    table that references a job or a variant). Names come from the database's own catalog, so
    a fixture or an SQL check can be written against what is really there.
    """
    handle_errors(_db_describe)(list(tables), database_url)


def _db_describe(tables: list[str], database_url: str | None) -> None:
    with open_database(database_url) as database, contextlib.closing(database.connect("ye-run db describe")) as conn:
        snapshot = catalog.read(conn)
    wanted = tables or _interesting(snapshot)
    unknown = [t for t in wanted if snapshot.table(t) is None]
    if unknown:
        close = {t: difflib.get_close_matches(t, list(snapshot.tables), n=1) for t in unknown}
        hints = "; ".join(f"{t!r}" + (f" (did you mean {c[0]!r}?)" if c else "") for t, c in close.items())
        raise InputError(f"no such table in {database.display}: {hints}")
    for name in wanted:
        click.echo(describe_table(snapshot, name))


def _interesting(snapshot: catalog.Catalog) -> list[str]:
    core = [t for t in requirements.REFERENCE_TABLES + requirements.RUNNER_TABLES if snapshot.has(t)]
    referencing = sorted({fk.table for fk in snapshot.foreign_keys if fk.ref_table in ("jobs", "jobs_variants")}
                         - set(core))
    return core + referencing


def describe_table(snapshot: catalog.Catalog, name: str) -> str:
    """A table as `db describe` prints it."""
    table = snapshot.tables[name]
    lines = [f"{name}" + (f"  (primary key: {', '.join(table.primary_key)})" if table.primary_key else "")]
    for column in table.columns.values():
        flags = [column.type] + (["NOT NULL"] if column.not_null else []) + (["default"] if column.has_default else [])
        lines.append(f"  {column.name:22} {' '.join(flags)}")
    for fk in sorted(snapshot.foreign_keys, key=lambda fk: (fk.columns, fk.ref_table)):
        if fk.table == name:
            lines.append(f"  -> {', '.join(fk.columns)} references {fk.ref_table} ({', '.join(fk.ref_columns)})")
    return "\n".join(lines) + "\n"


@click.command("cleanup")
@click.option("--run", "run_id", metavar="ID", help="Delete what this run created (from the run registry).")
@click.option("--report", "report", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Delete what the run in this JSON report created (where there is no registry).")
@click.option("--tenant", metavar="TENANT", help="Delete every job of this test tenant, and the tenant.")
@click.option("--older-than", metavar="DURATION",
              help="Delete what every finished run older than this kept (from the run registry), e.g. 7d, 12h; "
                   "runs still going are skipped, and said so.")
@click.option("--pending", is_flag=True,
              help="Delete what runs kept because the pipeline might still have been working on their rows, once "
                   "that time (their steps' limits) is over.")
@click.option("--dry-run", is_flag=True, help="Print what would be deleted; delete nothing.")
@options.database_url
@options.tenant_pattern
@options.force
def cleanup(run_id: str | None, report: Path | None, tenant: str | None, older_than: str | None, pending: bool,
            dry_run: bool, database_url: str | None, tenant_pattern: str | None, force: bool) -> None:
    """Delete seeded rows and every row that references them, in one transaction.

    Dependent rows are found from the database's foreign keys and deleted first. Rows of
    another run or tenant are never touched: if the rows to delete reach them, nothing is
    deleted. A run that has not finished is never touched either (its process holds its lock,
    or is alive, or was seen recently); --force accepts a run whose state cannot be told, never
    a live one. Prints the number of rows per table.
    """
    handle_errors(_cleanup)(run_id, report, tenant, older_than, pending, dry_run, database_url, tenant_pattern,
                            force)


def _cleanup(run_id: str | None, report: Path | None, tenant: str | None, older_than: str | None, pending: bool,
             dry_run: bool, database_url: str | None, tenant_pattern: str | None, force: bool) -> None:
    if sum(x is not None for x in (run_id, report, tenant, older_than)) + pending != 1:
        raise InputError("give exactly one of --run, --report, --tenant, --older-than or --pending")
    if older_than is not None or pending:
        _cleanup_registered(_age(older_than) if older_than is not None else None, dry_run, database_url,
                            tenant_pattern, force)
        return
    if tenant is not None:
        guard.check_tenant(tenant, tenant_pattern, force, action="delete from")
    records = _from_report(report) if report is not None else []
    for record in records:
        guard.check_tenant(record.tenant_id, tenant_pattern, force, action="delete from")
    with open_database(database_url) as database, contextlib.closing(database.connect("ye-run cleanup")) as conn:
        snapshot = catalog.read(conn)
        if tenant is not None:
            print_counts(f"tenant {tenant}", cleanup_module.cleanup_tenant(conn, snapshot, tenant, dry_run, force))
            return
        trusted = not records or requirements.registry_available(snapshot)
        for record in [_registered(conn, snapshot, r) for r in records] or [_from_registry(conn, snapshot, run_id)]:
            guard.check_tenant(record.tenant_id, tenant_pattern, force, action="delete from")
            try:
                result = cleanup_module.cleanup_run(conn, snapshot, record, dry_run, untrusted=not trusted,
                                                    force=force)
            except cleanup_module.LiveRun as exc:
                raise GuardError(f"refusing to clean up {exc}; nothing was deleted: its own cleanup policy "
                                 f"applies when it ends, or `ye-run cleanup --run {exc.run_id}` once it has") from None
            print_counts(f"run {record.run_id} (tenant {record.tenant_id})", result)


def _age(text: str) -> float:
    """A duration that may also be in days (`7d`)."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)d", text.strip())
    try:
        return float(match.group(1)) * 86400 if match else durations.parse(text.strip())
    except ValueError as exc:
        raise InputError(f"--older-than {text!r}: {exc} (or days: 7d)") from None


def _cleanup_registered(seconds: float | None, dry_run: bool, database_url: str | None, tenant_pattern: str | None,
                        force: bool) -> None:
    """Every run older than `seconds` that kept rows (or, with None, every run whose cleanup waited for the
    pipeline, once that time is over), through the same guarded, FK-aware cleanup."""
    with open_database(database_url) as database, contextlib.closing(database.connect("ye-run cleanup")) as conn:
        snapshot = catalog.read(conn)
        if seconds is None:
            kept = _pending_runs(_registry_conn(conn, snapshot))
        else:
            kept = [run.run_id for run in registry.runs(_registry_conn(conn, snapshot), kept_only=True)
                    if run.age >= seconds]
            if not kept:
                click.echo(f"no run older than {durations.format_seconds(seconds)} kept rows")
        _clean_each(conn, snapshot, kept, dry_run, tenant_pattern, force)


def _pending_runs(conn) -> list[str]:  # type: ignore[no-untyped-def]
    """Runs whose rows were kept while the pipeline might still work on them, and whose time is over."""
    found = registry.pending(conn)
    for run_id, left in found:
        if left > 0:
            click.echo(f"skipped run {run_id}: the pipeline may still be working on its rows for "
                       f"{durations.format_seconds(left)}", err=True)
    if not found:
        click.echo("no run has rows pending cleanup")
    return [run_id for run_id, left in found if left <= 0]


def _clean_each(conn, snapshot: catalog.Catalog, run_ids: list[str], dry_run: bool,  # type: ignore[no-untyped-def]
                tenant_pattern: str | None, force: bool) -> None:
    """Each run through the guarded cleanup; runs still going, or refused, are skipped and said so."""
    skipped = 0
    for run_id in run_ids:
        record = _from_registry(conn, snapshot, run_id)
        try:
            guard.check_tenant(record.tenant_id, tenant_pattern, force, action="delete from")
            result = cleanup_module.cleanup_run(conn, snapshot, record, dry_run, force=force)
        except cleanup_module.LiveRun as exc:
            skipped += 1
            click.echo(f"skipped run {run_id}: not finished ({exc.status})", err=True)
            continue
        except GuardError as exc:
            click.echo(f"skipped run {run_id}: {exc}", err=True)
            continue
        print_counts(f"run {run_id} (tenant {record.tenant_id})", result)
    if skipped:
        click.echo(f"{skipped} run(s) not finished were skipped; their rows are theirs until they end", err=True)


def _registry_conn(conn, snapshot: catalog.Catalog):  # type: ignore[no-untyped-def]
    _need_registry(snapshot, "install it with `ye-run db init`")
    return conn


def _need_registry(snapshot: catalog.Catalog, otherwise: str) -> None:
    if requirements.registry_outdated(snapshot):
        raise SchemaMissingError("this database's run registry is from an older ye-run (it records no run owners, so "
                                 "a live run cannot be told from a finished one); update it with `ye-run db init`")
    if not requirements.registry_available(snapshot):
        raise SchemaMissingError(f"this database has no run registry (ye_run_runs); {otherwise}")


@click.command("runs")
@click.option("--kept", is_flag=True, help="Only runs whose rows are still there (not cleaned up).")
@options.database_url
def runs(kept: bool, database_url: str | None) -> None:
    """List the runs in the run registry: id, scenario, tenant, age, outcome, rows kept, rows deleted, state.

    "seeded kept" counts the root rows a run seeded (jobs, assets, its tenant) that are still there;
    cleaning them up deletes those and everything hanging off them, which "deleted" counts once done.

    The state is what a cleaner sees: running (its lock is held), alive (reconnecting),
    recently seen, finished, or abandoned (no verdict, its process gone).
    """
    handle_errors(_runs)(kept, database_url)


def _runs(kept: bool, database_url: str | None) -> None:
    with open_database(database_url) as database, contextlib.closing(database.connect("ye-run runs")) as conn:
        found = registry.runs(_registry_conn(conn, catalog.read(conn)), kept_only=kept)
    for line in table.lines(RUN_COLUMNS, [_run_cells(run) for run in found]):
        click.echo(line)
    click.echo(f"{len(found)} run(s)", err=True)


RUN_COLUMNS = (table.Column("run"), table.Column("scenario"), table.Column("tenant"), table.Column("age", right=True),
               table.Column("outcome"), table.Column("seeded kept", right=True), table.Column("deleted", right=True),
               table.Column("state"))
"""`ye-run runs`: every cell whole (a table as wide as its longest scenario and tenant)."""


def _run_cells(run) -> list[str]:  # type: ignore[no-untyped-def]
    return [run.run_id, run.scenario, run.tenant_id, durations.format_seconds(run.age), run.outcome or "no verdict",
            str(run.rows_kept), "" if run.rows_deleted is None else str(run.rows_deleted), run.status.state.value]


def _from_report(report: Path) -> list[registry.RunRecord]:
    """The runs a JSON report recorded: a whole `--json` report, one scenario of it, or a bare record (read within
    the bounds `ye-run report` and `compare` keep: size, nesting, numbers)."""
    from runner.report import reportfile

    doc = reportfile.read_json(report)
    if isinstance(doc, dict) and isinstance(doc.get("scenarios"), list):
        found = [(f"$.scenarios[{i}].run.record", _dig(s, "run", "record")) for i, s in enumerate(doc["scenarios"])]
        records = [(path, r) for path, r in found if r is not None]
    elif isinstance(doc, dict) and "run" in doc:
        records = [("$.run.record", _dig(doc, "run", "record"))]
    else:
        records = [("$", doc)]
    if not records:
        raise InputError(f"{report}: the report records no seeded rows (no scenario got as far as seeding)")
    out = []
    for path, record in records:
        try:
            out.append(registry.from_json(record))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"{report}: {path}: not a ye-run run record ({registry.RECORD_SHAPE}; "
                             f"{type(exc).__name__}: {exc})") from None
    return out


def _registered(conn, snapshot: catalog.Catalog, record: registry.RunRecord) -> registry.RunRecord:  # type: ignore[no-untyped-def]
    """Where the database keeps a run registry, a report only names a run: what the registry recorded for it is
    what is deleted (a report anyone could have written proves nothing more)."""
    if not requirements.registry_available(snapshot):
        return record
    found = registry.load(conn, record.run_id)
    if found is None:
        raise GuardError(f"refusing to clean up from a report: run {record.run_id!r} is not in this database's run "
                         "registry, so nothing shows the rows it names are a run's (use --tenant for a test tenant)")
    if found.tenant_id != record.tenant_id:
        raise GuardError(f"refusing to clean up from a report: the registry records run {record.run_id} on tenant "
                         f"{found.tenant_id!r}, the report says {record.tenant_id!r}")
    return found


def _dig(doc: object, *keys: str) -> object:
    for key in keys:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def _from_registry(conn, snapshot: catalog.Catalog, run_id: str | None) -> registry.RunRecord:  # type: ignore[no-untyped-def]
    _need_registry(snapshot, "clean up with --tenant or --report, or install the registry with `ye-run db init`")
    found = registry.load(conn, run_id or "")
    if found is None:
        raise InputError(f"no run {run_id!r} in the run registry")
    return found


def print_counts(what: str, result: cleanup_module.CleanupResult) -> None:
    verb = "would delete" if result.dry_run else "deleted"
    click.echo(f"cleanup of {what}: {verb} {result.total} row(s)")
    for name, count in result.counts.items():
        click.echo(f"  {name:24} {count}")
    for note in result.notes:
        click.echo(f"  note: {note}")

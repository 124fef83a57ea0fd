"""Seeding a job as the original tool did, and what a real job also has, in one transaction.

Per job: tenant upsert (when a `tenants` table exists), the image asset (once per run, then
shared), the job, its job inputs, N variants in one multi-row INSERT (one round trip), then the
definition's seed rows (where their tables exist) and the scenario's fixtures (a round trip each,
for their keys), and the registry rows. Insert order satisfies a real deployment's foreign keys.
Before the first job, the database is introspected and every missing table or column, and every
NOT NULL column nobody would fill, is reported at once. Any failure rolls the whole job back.
"""

from __future__ import annotations

import contextlib
import difflib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from runner.db import failures, guard, seedrows
from runner.db.catalog import Catalog, Table
from runner.db.images import StoredImage
from runner.db.registry import RunRecord, SeededJob, SeededVariant, seeded_rows_sql
from runner.db.requirements import SEEDED_COLUMNS, TIMESTAMP_COLUMNS, missing_columns
from runner.errors import GuardError, InputError, SchemaMissingError, Unavailable
from runner.scenario.model import Fixture, RowRef, Scenario
from runner.scenario.semantics import PLACEHOLDER

IMAGE_TYPE = "generated"
LOCK_WAIT = "SET LOCAL lock_timeout = '2s'"
"""How long one try at seeding a job waits on a lock another session holds (a tenant row locked FOR UPDATE,
a table locked by a migration): short, so the run stays responsive (Ctrl+C, its deadlines); the run tries
again."""


class LockBusy(Exception):
    """Seeding waited LOCK_WAIT on another session's lock and was rolled back: nothing of the job was written."""
_NOT_THE_SCENARIOS_FAULT = (psycopg2.OperationalError, psycopg2.InterfaceError, psycopg2.errors.InsufficientPrivilege,
                            psycopg2.errors.ReadOnlySqlTransaction)
"""Seeding errors that say the database or the role is the problem (exit 3), not the scenario (exit 2)."""
TENANT_NAME_COLUMNS = ("name", "tenant_name", "display_name")


@dataclass(frozen=True, slots=True)
class Insert:
    """One INSERT: its SQL (identifiers quoted) and how to build its parameters for a job."""

    table: str
    text: str
    params: Callable[["JobIds"], list[Any]]


@dataclass(frozen=True, slots=True)
class JobIds:
    job: str
    asset: str
    variants: tuple[str, ...]


class Seeder:
    """Seeds the jobs of one run; construct it once per run (it checks the schema first)."""

    def __init__(self, conn: psycopg2.extensions.connection, catalog: Catalog, scenario: Scenario,
                 record: RunRecord, image: StoredImage, registry: bool,
                 tenant_pattern: str | None = None, force: bool = False):
        try:
            guard.check_tenant(record.tenant_id, tenant_pattern, force)
        except GuardError as exc:
            raise GuardError(f"{scenario.at('$.tenant.id')}: {exc}") from None
        _guard_fixtures(scenario, record.tenant_id, tenant_pattern, force)
        seedrows.check_tenants(scenario, record.tenant_id, tenant_pattern, force)
        self.conn = conn
        self.catalog = catalog
        self.scenario = scenario
        self.record = record
        self.image = image
        self.registry = registry
        self.tenant = record.tenant_id
        self.asset_id: str | None = None
        precheck(catalog, scenario)
        self.store_id = self._resolve(scenario.store, "stores", "store_id", "$.store")
        self.tone_style_id = self._resolve(scenario.tone_style, "tone_styles", "tone_style_id", "$.tone_style")
        self._tenant = self._tenant_insert()
        seeded_rows, self.notes = seedrows.to_seed(catalog, scenario)
        """Things to tell about the seed (a seed row skipped, and why)."""
        self._fixtures = [self._fixture_insert(i, f) for i, f in enumerate(seeded_rows + scenario.fixtures)]
        self._core_sql = {True: self._build_core(with_asset=True), False: self._build_core(with_asset=False)}

    # --- per job ----------------------------------------------------------------------

    def new_ids(self) -> JobIds:
        """The ids of the next job, chosen before it is written, so a write lost in doubt can be looked for."""
        return JobIds(str(uuid.uuid4()), self.asset_id or str(uuid.uuid4()),
                      tuple(str(uuid.uuid4()) for _ in range(self.scenario.variants)))

    def seed_job(self, ordinal: int, ids: JobIds | None = None) -> SeededJob:
        """Insert one job and everything it needs; all or nothing."""
        ids = ids or self.new_ids()
        creates_asset = self.asset_id is None
        rows: list[tuple[str, tuple]] = []
        tenant_created = False
        try:
            with self.conn.cursor() as cur:
                first = [LOCK_WAIT]  # sent with the transaction's first statement, not on its own
                if self._tenant is not None and not self.record.jobs:
                    cur.execute(";\n".join([*first, self._tenant.text]), self._tenant.params(ids))
                    first = []
                    tenant_created = cur.fetchone() is not None
                    if tenant_created and self.registry:  # recorded with the job: cleanup --run finds it
                        cur.execute("UPDATE ye_run_runs SET tenant_created = true WHERE run_id = %s",
                                    (self.record.run_id,))
                statements, params = self._core(ids, creates_asset, rows)
                statements = [*first, *statements]
                if self._fixtures:
                    cur.execute(";\n".join(statements), params)
                    statements, params = [], []
                    for fixture in self._fixtures:
                        cur.execute(fixture.text, fixture.params(ids))
                        rows.extend((fixture.table, tuple(str(v) for v in key))
                                    for key in cur.fetchall() if key[0] is not None)
                if self.registry:
                    text, extra = seeded_rows_sql(self.record.run_id, rows)
                    statements.append(text)
                    params.extend(extra)
                if statements:  # none left: fixtures only, and no registry to write (bench/pipeline.py)
                    cur.execute(";\n".join(statements), params)
            self.conn.commit()
        except psycopg2.errors.LockNotAvailable as exc:
            _rollback(self.conn)
            table = exc.diag.table_name
            raise LockBusy(f"another session holds a lock seeding needs{f' (table {table})' if table else ''}") \
                from None
        except psycopg2.Error as exc:
            _rollback(self.conn)
            raise _seed_error(exc, self.scenario) from None
        except BaseException:
            _rollback(self.conn)
            raise
        return self._seeded(ordinal, ids, creates_asset, rows, tenant_created)

    def _seeded(self, ordinal: int, ids: JobIds, creates_asset: bool, rows: list[tuple[str, tuple]],
                tenant_created: bool) -> SeededJob:
        if creates_asset:
            self.asset_id = ids.asset
        self.record.tenant_created = self.record.tenant_created or tenant_created
        job = SeededJob(ordinal, ids.job, self.tenant, ids.asset,
                        tuple(SeededVariant(v, i + 1) for i, v in enumerate(ids.variants)), tuple(rows))
        self.record.add(job.rows)
        return job

    def adopt_if_committed(self, ordinal: int, ids: JobIds) -> SeededJob | None:
        """After a lost connection: the job, if its transaction did commit (read back, not guessed), else None.

        Rows seeded by fixtures are not listed then; cleanup still finds them through the job's foreign keys.
        """
        with self.conn.cursor() as cur:
            cur.execute("SELECT 1 FROM jobs WHERE job_id = %s", (ids.job,))
            committed = cur.fetchone() is not None
        self.conn.rollback()
        if not committed:
            return None
        creates_asset = self.asset_id is None
        rows: list[tuple[str, tuple]] = []
        self._core(ids, creates_asset, rows)
        return self._seeded(ordinal, ids, creates_asset, rows, tenant_created=self._tenant_created_recorded())

    def _tenant_created_recorded(self) -> bool:
        if not self.registry:
            return False
        with self.conn.cursor() as cur:
            cur.execute("SELECT tenant_created FROM ye_run_runs WHERE run_id = %s", (self.record.run_id,))
            row = cur.fetchone()
        self.conn.rollback()
        return bool(row and row[0])

    def _core(self, ids: JobIds, creates_asset: bool, rows: list[tuple[str, tuple]]) -> tuple[list[str], list]:
        statements: list[str] = []
        params: list[Any] = []
        for insert in self._core_sql[creates_asset]:
            statements.append(insert.text)
            params.extend(insert.params(ids))
        rows.append(("jobs", (ids.job,)))
        if creates_asset:
            rows.append(("image_assets", (ids.asset,)))
        rows.append(("job_inputs", (ids.job,)))
        rows.extend(("jobs_variants", (v,)) for v in ids.variants)
        return statements, params

    # --- SQL, built once per run --------------------------------------------------------

    def _build_core(self, with_asset: bool) -> list[Insert]:
        s = self.scenario
        step = s.start
        inserts = [self._insert("jobs", {
            "job_id": lambda i: i.job, "tenant_id": lambda i: self.tenant, "store_id": lambda i: self.store_id,
            "status": lambda i: "done", "current_step": lambda i: step})]
        if with_asset:
            inserts.append(self._insert("image_assets", {
                "image_asset_id": lambda i: i.asset, "image_type": lambda i: IMAGE_TYPE,
                "image_url": lambda i: self.image.url, "width": lambda i: self.image.width,
                "height": lambda i: self.image.height, "tenant_id": lambda i: self.tenant,
                "job_id": lambda i: i.job}))
        inputs: dict[str, Callable[[JobIds], Any]] = {
            "job_id": lambda i: i.job, "img_asset_id": lambda i: i.asset,
            "tone_style_id": lambda i: self.tone_style_id, "desc_kor": lambda i: s.job_inputs.desc_kor}
        for column, value in s.job_inputs.extra:
            inputs[column] = (lambda v: lambda i: v)(value)
        inserts.append(self._insert("job_inputs", inputs))
        inserts.append(self._variants_insert(step))
        return inserts

    def _insert(self, table: str, values: dict[str, Callable[[JobIds], Any]]) -> Insert:
        columns, exprs = self._with_timestamps(table, list(values))
        text = self._render(table, columns, [exprs])
        getters = list(values.values())
        return Insert(table, text, lambda ids: [get(ids) for get in getters])

    def _variants_insert(self, step: str) -> Insert:
        base = ["job_variants_id", "job_id", "img_asset_id", "creation_order", "status", "current_step"]
        table = self.catalog.tables["jobs_variants"]
        if table.has("retry_count") and not table.columns["retry_count"].has_default:
            base.append("retry_count")
        columns, exprs = self._with_timestamps("jobs_variants", base)
        text = self._render("jobs_variants", columns, [exprs] * self.scenario.variants)
        with_retry = "retry_count" in base

        def params(ids: JobIds) -> list[Any]:
            out: list[Any] = []
            for order, variant in enumerate(ids.variants, start=1):
                out.extend([variant, ids.job, ids.asset, order, "done", step])
                if with_retry:
                    out.append(0)
            return out

        return Insert("jobs_variants", text, params)

    def _with_timestamps(self, table: str, columns: list[str]) -> tuple[list[str], list[str]]:
        found = self.catalog.tables[table]
        stamps = [c for c in TIMESTAMP_COLUMNS if found.has(c) and c not in columns]
        return columns + stamps, ["%s"] * len(columns) + ["now()"] * len(stamps)

    def _render(self, table: str, columns: list[str], rows: list[list[str]]) -> str:
        head = sql.SQL("INSERT INTO {} ({}) VALUES ").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))).as_string(self.conn)
        return head + ", ".join("(" + ", ".join(row) + ")" for row in rows)

    def _tenant_insert(self) -> Insert | None:
        table = self.catalog.table("tenants")
        if table is None or not table.has("tenant_id"):
            return None
        values: dict[str, Callable[[JobIds], Any]] = {"tenant_id": lambda i: self.tenant}
        name_column = next((c for c in TENANT_NAME_COLUMNS if table.has(c)), None)
        if name_column:
            values[name_column] = lambda i: self.scenario.tenant.name
        insert = self._insert("tenants", values)
        return Insert("tenants", insert.text + " ON CONFLICT DO NOTHING RETURNING 1", insert.params)

    def _fixture_insert(self, index: int, fixture: Fixture) -> Insert:
        table = self.catalog.tables[fixture.table]
        columns = list(dict.fromkeys(c for row in fixture.rows for c, _ in row))
        rows = [dict(row) for row in fixture.rows]
        exprs = [["%s" if c in row else "DEFAULT" for c in columns] for row in rows]
        text = self._render(fixture.table, columns, exprs)
        key = table.primary_key
        text += sql.SQL(" RETURNING {}").format(
            sql.SQL(", ").join(map(sql.Identifier, key)) if key else sql.SQL("NULL")).as_string(self.conn)

        def params(ids: JobIds) -> list[Any]:
            values = {"job.id": ids.job, "tenant.id": self.tenant, "image.id": ids.asset,
                      "scenario.ad_copy": self.scenario.ad_copy}
            values.update({f"variant.{n}.id": v for n, v in enumerate(ids.variants, start=1)})
            return [_substitute(row[c], values) for row in rows for c in columns if c in row]

        return Insert(fixture.table, text, params)

    def _resolve(self, ref: RowRef, table: str, column: str, field: str) -> str | None:
        if ref.kind == "none":
            return None
        found = self.catalog.table(table)
        if found is None or not found.has(column):
            if ref.kind == "any":
                return None
            raise InputError(f"{self.scenario.at(field)}: the database has no {table}.{column} to refer to")
        query = sql.SQL("SELECT {c}::text FROM {t} ").format(c=sql.Identifier(column), t=sql.Identifier(table))
        with self.conn.cursor() as cur:
            try:
                if ref.kind == "any":
                    cur.execute(query.as_string(self.conn) + "LIMIT 1")
                else:
                    cur.execute(query.as_string(self.conn) + sql.SQL("WHERE {} = %s").format(
                        sql.Identifier(column)).as_string(self.conn), (ref.id,))
                row = cur.fetchone()
            except psycopg2.DataError:
                self.conn.rollback()
                raise InputError(f"{self.scenario.at(field + '.id')}: {ref.id!r} is not a valid "
                                 f"{found.columns[column].type}") from None
        self.conn.rollback()
        if ref.kind == "id" and row is None:
            raise InputError(f"{self.scenario.at(field + '.id')}: no {table} row with {column} = {ref.id!r}")
        return row[0] if row else None


def _rollback(conn: psycopg2.extensions.connection) -> None:
    """Roll back; on a dead connection the server already has, and the real error must not be hidden."""
    with contextlib.suppress(psycopg2.Error):
        conn.rollback()


def _substitute(value: Any, values: dict[str, str]) -> Any:
    if not isinstance(value, str):
        return value
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], value)


def _guard_fixtures(scenario: Scenario, tenant: str, pattern: str | None, force: bool) -> None:
    """A fixture row naming a tenant is held to the tenant guard, like the scenario's own tenant."""
    placeholders = {"tenant.id": tenant, "job.id": "", "image.id": "", "scenario.ad_copy": scenario.ad_copy}
    placeholders.update({f"variant.{n}.id": "" for n in range(1, scenario.variants + 1)})
    for i, fixture in enumerate(scenario.fixtures):
        for j, row in enumerate(fixture.rows):
            value = dict(row).get("tenant_id")
            if value is not None:
                where = scenario.at(f"$.fixtures[{i}].rows[{j}].tenant_id")
                try:
                    guard.check_tenant(str(_substitute(value, placeholders)), pattern, force,
                                       action="seed a fixture row for")
                except GuardError as exc:
                    raise GuardError(f"{where}: {exc}") from None


def precheck(catalog: Catalog, scenario: Scenario) -> None:
    """Everything the seed needs exists, and nothing NOT NULL is left without a value."""
    extra = {"job_inputs": tuple(c for c, _ in scenario.job_inputs.extra)}
    problems = missing_columns(catalog)
    if problems:
        raise SchemaMissingError("the database lacks what ye-run seeds:\n  - " + "\n  - ".join(problems))
    _check_extra_columns(catalog, scenario)
    unfilled = []
    for table, columns in SEEDED_COLUMNS.items():
        filled = set(columns) | set(TIMESTAMP_COLUMNS) | ({"retry_count"} if table == "jobs_variants" else set())
        filled |= set(extra.get(table, ()))
        unfilled += _unfilled(catalog.tables[table], filled)
    tenants = catalog.table("tenants")
    if tenants is not None:
        unfilled += _unfilled(tenants, {"tenant_id", *TENANT_NAME_COLUMNS, *TIMESTAMP_COLUMNS})
    if unfilled:
        raise SchemaMissingError("ye-run cannot seed this schema: NOT NULL column(s) with no default that ye-run "
                                 "does not set (give them a default; job_inputs columns can be set with "
                                 "job_inputs.extra):\n  - " + "\n  - ".join(unfilled))
    seedrows.check(catalog, scenario)
    _check_fixtures(catalog, scenario)


def _check_extra_columns(catalog: Catalog, scenario: Scenario) -> None:
    """An unknown job_inputs.extra column is the author's typo (exit 2), not a broken database."""
    table = catalog.tables["job_inputs"]
    problems = []
    for column, _ in scenario.job_inputs.extra:
        if not table.has(column):
            close = difflib.get_close_matches(column, list(table.columns), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; it has: {', '.join(table.columns)}"
            problems.append(f"{scenario.at('$.job_inputs.extra.' + column)}: table job_inputs has no column "
                            f"{column!r}{hint}")
    if problems:
        raise InputError("\n".join(problems))


def _unfilled(table: Table, filled: set[str]) -> list[str]:
    return [f"{table.name}.{c.name} ({c.type})" for c in table.columns.values() if c.must_be_set and c.name not in filled]


def _check_fixtures(catalog: Catalog, scenario: Scenario) -> None:
    """A misspelt table or column is the author's (exit 2); one the database lacks with nothing like it is the
    target's: the scenario is not run there (Unavailable)."""
    problems: list[str] = []
    lacking: list[str] = []
    for i, fixture in enumerate(scenario.fixtures):
        where = f"$.fixtures[{i}]"
        table = catalog.table(fixture.table)
        if table is None:
            close = difflib.get_close_matches(fixture.table, list(catalog.tables), n=1)
            text = f"{scenario.at(where + '.table')}: table {fixture.table!r} does not exist in the database"
            (problems if close else lacking).append(text + (f"; did you mean {close[0]!r}?" if close else ""))
            continue
        given = {c for row in fixture.rows for c, _ in row}
        for column in sorted(given - set(table.columns)):
            close = difflib.get_close_matches(column, list(table.columns), n=1)
            text = f"{scenario.at(where + '.rows')}: table {fixture.table} has no column {column!r}"
            (problems if close else lacking).append(text + (f"; did you mean {close[0]!r}?" if close else ""))
        for j, row in enumerate(fixture.rows):
            needed = {c.name for c in table.columns.values() if c.must_be_set} - {c for c, _ in row}
            for column in sorted(needed):
                problems.append(f"{scenario.at(f'{where}.rows[{j}]')}: {fixture.table}.{column} is NOT NULL with no "
                                "default; give it a value")
    if problems:
        raise InputError("\n".join(problems + lacking))
    if lacking:
        raise Unavailable("the database lacks what its fixtures need: " + "; ".join(lacking))


def _seed_error(exc: psycopg2.Error, scenario: Scenario) -> Exception:
    detail = (exc.diag.message_primary or str(exc)).strip()
    table = exc.diag.table_name
    where = f" (table {table})" if table else ""
    if isinstance(exc, _NOT_THE_SCENARIOS_FAULT) or exc.pgcode is None:
        return failures.describe(exc, "seeding (rolled back)")
    return InputError(f"{scenario.path}: seeding failed and was rolled back{where}: {detail}")


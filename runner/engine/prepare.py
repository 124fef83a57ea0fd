"""Everything a run checks against the database before its first write, and the suite's preflight.

The catalog, the image, the tenant guard, the seed's pre-check, the SQL checks against the
catalog, and how to observe. A suite prepares every scenario before any runs, so a refusal stops
it before anything is seeded, like a validation error; a scenario the target cannot run (a table
it lacks) is set aside as not run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import psycopg2
import psycopg2.extensions

from runner.db import catalog as catalog_module, failures, images, registry, requirements
from runner.db.connect import Database, StatementCounter
from runner.db.seed import Seeder
from runner.engine import checks
from runner.engine.settings import RunSettings
from runner.errors import InfrastructureError, InputError, Refused, Unavailable, YeRunError
from runner.scenario.model import Scenario

Method = Literal["history", "listen"]


@dataclass
class Prepared:
    """What a run has once the database has said yes: the catalog, the seeder, the SQL checks' own session."""

    catalog: catalog_module.Catalog
    seeder: Seeder
    checks: checks.CheckSession
    method: Method | None
    """How to observe; None for a run that does not (observe: false)."""
    registered: bool
    """The database keeps a run registry: the run registers itself, cleaners find it."""


def prepare(conn: psycopg2.extensions.connection, scenario: Scenario, database: Database, settings: RunSettings,
            record: registry.RunRecord, statements: StatementCounter,
            note: Callable[[str], None] = lambda text: None) -> Prepared:
    """Every check that needs the database, before the first write; writes nothing. The caller closes
    `Prepared.checks`."""
    snapshot = catalog_module.read(conn)
    stored = _stored_image(scenario, settings)
    registered = requirements.registry_available(snapshot)
    seeder = Seeder(conn, snapshot, scenario, record, stored, registered, settings.tenant_pattern, settings.force)
    for text in seeder.notes:  # a seed row skipped where the target has no such table
        note(text)
    session = checks.CheckSession(database, statements.cursor_factory())
    try:
        if scenario.expect.sql:
            session.precheck(scenario.expect.sql)  # the catalog's word, before anything is seeded
        method = observe_method(snapshot, settings) if scenario.observe else None
    except BaseException:
        session.close()
        raise
    return Prepared(snapshot, seeder, session, method, registered)


def _stored_image(scenario: Scenario, settings: RunSettings) -> images.StoredImage:
    source = images.first_existing(scenario.images, scenario.at("$.images"))
    chosen = f"$.images[{scenario.images.index(source)}]" if scenario.source.marks.get("$.images") else "$.images"
    try:
        return images.store(source, settings.asset_dir, settings.asset_base_url)
    except InputError as exc:
        raise InputError(f"{scenario.at(chosen)}: {exc}") from None


def observe_method(snapshot: catalog_module.Catalog, settings: RunSettings) -> Method:
    """The history table where it is installed (and wanted), else LISTEN; refused without a notify trigger."""
    available = requirements.history_available(snapshot)
    if settings.observe == "history" and not available:
        raise InfrastructureError("--observe history: this database has no ye-run history table "
                                  "(install it with `ye-run db init`)")
    if not snapshot.notifies("jobs_variants", settings.variant_channel):
        raise InfrastructureError(f"no trigger on jobs_variants notifies channel {settings.variant_channel!r}; "
                                  "`ye-run db check` shows what is missing")
    return "history" if available and settings.observe != "listen" else "listen"


def preflight(scenarios: list[Scenario], database: Database, settings: RunSettings,
              conn: psycopg2.extensions.connection | None = None) -> dict[int, str]:
    """Prepare every scenario before any runs, so a refusal (a guard, a catalog check, an image) stops the whole
    suite before anything is seeded, like a validation error; raises one error listing them all. Returns, by
    position, why a scenario is not run here: the target lacks a table it needs (with nothing like it). `conn`: the
    caller's connection (left open, its transaction rolled back), else one of its own for the checks."""
    refusals: list[YeRunError] = []
    unavailable: dict[int, str] = {}
    opened = contextlib.nullcontext(conn) if conn is not None else \
        contextlib.closing(database.connect("ye-run preflight"))
    with opened as checking:
        if scenarios:
            seeding = requirements.privileges(checking, requirements.SEEDING)
            if not seeding.ok:  # one line for the suite, not the same error once per scenario
                raise Refused([InfrastructureError(f"{seeding.what}: {seeding.detail}; every scenario seeds these "
                                                   "tables: grant INSERT, or use a login that may")])
        for index, scenario in enumerate(scenarios):
            try:
                record = registry.new_record(scenario.name, scenario.tenant.id, scenario.tenant.isolate)
                prepare(checking, scenario, database, settings, record, StatementCounter()).checks.close()
            except Unavailable as exc:
                unavailable[index] = f"not run: {exc}"
            except YeRunError as exc:
                refusals.append(exc)
            except psycopg2.Error as exc:
                refusals.append(failures.describe(exc, f"checking scenario {scenario.name!r}"))
            finally:
                with contextlib.suppress(psycopg2.Error):
                    checking.rollback()
    if refusals:
        raise Refused(refusals)
    return unavailable

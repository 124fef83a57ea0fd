"""Installing the reference schema and ye-run's own objects, idempotently and under a lock."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg2.extensions

from runner import resources
from runner.db import catalog as catalog_module
from runner.db.requirements import REFERENCE_TABLES
from runner.errors import SchemaMissingError

SCHEMA_VERSION = "ye-run schema 6"
"""Bumped whenever runner.sql changes: `install` re-applies it (idempotently) to an older registry."""
REFERENCE_VERSION = "ye-run reference schema 2"
"""Bumped whenever reference.sql changes: `install` re-applies it (idempotently: new tables only, nothing existing
is altered) to a reference schema an older ye-run installed, such as a reused embedded data directory."""
_REFERENCE_STORE = ("00000000-0000-4000-8000-000000000001", "Reference test store")
"""The row reference.sql inserts: with its reference-only tables, the mark of a reference schema installed before
REFERENCE_VERSION was recorded."""
_LOCK_KEY = 0x79652D72756E  # "ye-run": serialises concurrent installs across processes


@dataclass(frozen=True, slots=True)
class InstallResult:
    reference_installed: bool
    runner_installed: bool
    note: str


def install(conn: psycopg2.extensions.connection, with_reference: bool = True) -> InstallResult:
    """Install what is missing; never touches tables that exist (a real deployment's stay as they are)."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        outdated = with_reference and _reference_outdated(cur)
        if _current(cur) and not outdated:
            conn.commit()
            return InstallResult(False, False, "already installed")
        catalog = catalog_module.read_in(cur)
        present = [t for t in REFERENCE_TABLES if catalog.has(t)]
        reference = False
        if with_reference and (not present or outdated):
            cur.execute(resources.sql("reference.sql"))
            cur.execute(f"COMMENT ON TABLE jobs IS '{REFERENCE_VERSION}'")
            reference = True
        elif with_reference and len(present) < len(REFERENCE_TABLES) and not _has_seeded_tables(catalog):
            missing = [t for t in REFERENCE_TABLES if t not in present]
            conn.rollback()
            raise SchemaMissingError(f"the database has some pipeline tables ({', '.join(present)}) but not "
                                     f"others ({', '.join(missing)}); refusing to guess: create them, or "
                                     "point ye-run at an empty database")
        cur.execute(resources.sql("runner.sql"))
        cur.execute(f"COMMENT ON TABLE ye_run_runs IS '{SCHEMA_VERSION}'")
    conn.commit()
    note = "reference schema brought up to date; ye-run objects installed" if outdated else \
        "reference schema and ye-run objects installed" if reference else (
        "pipeline tables already exist (left unchanged); installed ye-run's own objects")
    return InstallResult(reference, True, note)


def _current(cur: psycopg2.extensions.cursor) -> bool:
    cur.execute("SELECT obj_description(to_regclass('ye_run_runs'), 'pg_class')")
    return cur.fetchone()[0] == SCHEMA_VERSION


def _reference_outdated(cur: psycopg2.extensions.cursor) -> bool:
    """A reference schema an older ye-run installed (never a deployment's tables: they carry no such mark)."""
    cur.execute("SELECT obj_description(to_regclass('jobs'), 'pg_class'), to_regclass('ad_copies') IS NOT NULL "
                "AND to_regclass('variant_evaluations') IS NOT NULL AND to_regclass('stores') IS NOT NULL")
    mark, legacy = cur.fetchone()
    if mark is not None:
        return mark.startswith("ye-run reference schema") and mark != REFERENCE_VERSION
    if not legacy:
        return False
    cur.execute("SELECT EXISTS (SELECT 1 FROM stores WHERE store_id::text = %s AND name = %s)", _REFERENCE_STORE)
    return bool(cur.fetchone()[0])


def _has_seeded_tables(catalog: catalog_module.Catalog) -> bool:
    return all(catalog.has(t) for t in ("jobs", "image_assets", "job_inputs", "jobs_variants"))

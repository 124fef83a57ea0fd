"""Installing the reference schema and ye-run's own objects, idempotently and under a lock."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg2.extensions

from runner import resources
from runner.db import catalog as catalog_module
from runner.db.requirements import REFERENCE_TABLES
from runner.errors import SchemaMissingError

SCHEMA_VERSION = "ye-run schema 2"
"""Bumped whenever runner.sql changes: `install` re-applies it (idempotently) to an older registry."""
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
        if _current(cur):
            conn.commit()
            return InstallResult(False, False, "already installed")
        catalog = catalog_module.read_in(cur)
        present = [t for t in REFERENCE_TABLES if catalog.has(t)]
        reference = False
        if with_reference and not present:
            cur.execute(resources.sql("reference.sql"))
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
    note = "reference schema and ye-run objects installed" if reference else (
        "pipeline tables already exist (left unchanged); installed ye-run's own objects")
    return InstallResult(reference, True, note)


def _current(cur: psycopg2.extensions.cursor) -> bool:
    cur.execute("SELECT obj_description(to_regclass('ye_run_runs'), 'pg_class')")
    return cur.fetchone()[0] == SCHEMA_VERSION


def _has_seeded_tables(catalog: catalog_module.Catalog) -> bool:
    return all(catalog.has(t) for t in ("jobs", "image_assets", "job_inputs", "jobs_variants"))

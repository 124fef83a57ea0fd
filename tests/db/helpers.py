"""Building the objects a seed needs, the way the engine does."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import psycopg2.extensions

from runner.db import catalog, images, registry, requirements
from runner.db.connect import Database
from runner.db.seed import Seeder
from runner.scenario import loader
from runner.scenario.model import Scenario
from tests.conftest import new_tenant, scenario_file


@dataclass
class Seeding:
    conn: psycopg2.extensions.connection
    seeder: Seeder
    record: registry.RunRecord
    scenario: Scenario


def load(tmp_path: Path, text: str) -> Scenario:
    return loader.load(scenario_file(tmp_path, text))


def seeding(database: Database, scenario: Scenario, tmp_path: Path, tenant: str | None = None,
            stack: contextlib.ExitStack | None = None, **kwargs) -> Seeding:
    conn = database.connect("ye-run tests")
    if stack is not None:
        stack.callback(conn.close)
    snapshot = catalog.read(conn)
    record = registry.RunRecord(registry.new_run_id(), scenario.name, tenant or new_tenant())
    has_registry = requirements.registry_available(snapshot)
    if has_registry:
        registry.start(conn, record)
    stored = images.store(images.first_existing(scenario.images, "images"), tmp_path / "assets")
    seeder = Seeder(conn, snapshot, scenario, record, stored, has_registry, **kwargs)
    return Seeding(conn, seeder, record, scenario)


def count(conn: psycopg2.extensions.connection, query: str, params: tuple = ()) -> int:
    with conn.cursor() as cur:
        cur.execute(query, params)
        value = cur.fetchone()[0]
    conn.rollback()
    return value


def rows(conn: psycopg2.extensions.connection, query: str, params: tuple = ()) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(query, params)
        result = cur.fetchall()
    conn.rollback()
    return result


def job_row_counts(conn: psycopg2.extensions.connection, job_id: str) -> dict[str, int]:
    return {
        "jobs": count(conn, "select count(*) from jobs where job_id = %s", (job_id,)),
        "job_inputs": count(conn, "select count(*) from job_inputs where job_id = %s", (job_id,)),
        "jobs_variants": count(conn, "select count(*) from jobs_variants where job_id = %s", (job_id,)),
        "image_assets": count(conn, "select count(*) from image_assets where job_id = %s", (job_id,)),
    }


def finish(s: Seeding, outcome: str = "passed") -> None:
    """End the run as a run does: its verdict recorded, then its locks released (its process is still this one,
    but a run that has let go of its lock with a verdict is finished)."""
    registry.finish(s.conn, s.record, outcome)
    with s.conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_unlock_all()")
    s.conn.commit()

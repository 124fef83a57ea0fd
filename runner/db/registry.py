"""What a run created: always in memory (and in its report), and in ye_run_* tables when present."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone

import psycopg2.extensions


def new_run_id() -> str:
    """`20261126T101500-3fa9c1`: sortable by time, unique by its random tail."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def isolated_tenant(tenant_id: str, run_id: str) -> str:
    return f"{tenant_id}_{run_id.rsplit('-', 1)[-1]}"


@dataclass(frozen=True, slots=True)
class SeededVariant:
    id: str
    creation_order: int


@dataclass(frozen=True, slots=True)
class SeededJob:
    ordinal: int
    job_id: str
    tenant_id: str
    asset_id: str
    variants: tuple[SeededVariant, ...]
    rows: tuple[tuple[str, tuple], ...]
    """(table, primary key values) of every row this job's seed created."""

    def variant(self, creation_order: int) -> SeededVariant:
        return self.variants[creation_order - 1]


@dataclass
class RunRecord:
    """The rows a run created, table by table; the source of truth for its cleanup."""

    run_id: str
    scenario: str
    tenant_id: str
    tenant_created: bool = False
    jobs: list[SeededJob] = field(default_factory=list)

    @property
    def job_ids(self) -> list[str]:
        """The jobs this run seeded, from the recorded rows (also for runs loaded from the registry)."""
        return [str(key[0]) for key in self.rows().get("jobs", [])]

    def rows(self) -> dict[str, list[tuple]]:
        out: dict[str, list[tuple]] = {}
        for job in self.jobs:
            for table, key in job.rows:
                out.setdefault(table, []).append(key)
        return out

    def to_json(self) -> dict:
        return {"run_id": self.run_id, "scenario": self.scenario, "tenant_id": self.tenant_id,
                "tenant_created": self.tenant_created,
                "rows": {table: [list(k) for k in keys] for table, keys in self.rows().items()}}


def start(conn: psycopg2.extensions.connection, record: RunRecord) -> None:
    with conn.cursor() as cur:
        cur.execute("INSERT INTO ye_run_runs (run_id, scenario, tenant_id) VALUES (%s, %s, %s)",
                    (record.run_id, record.scenario, record.tenant_id))
    conn.commit()


def finish(conn: psycopg2.extensions.connection, record: RunRecord, outcome: str) -> None:
    with conn.cursor() as cur:
        cur.execute("UPDATE ye_run_runs SET finished_at = now(), outcome = %s, tenant_created = %s "
                    "WHERE run_id = %s", (outcome, record.tenant_created, record.run_id))
    conn.commit()


def mark_cleaned(cur: psycopg2.extensions.cursor, run_id: str) -> None:
    cur.execute("UPDATE ye_run_runs SET cleaned_at = now() WHERE run_id = %s", (run_id,))


def load(conn: psycopg2.extensions.connection, run_id: str) -> RunRecord | None:
    """A run as the registry recorded it (rows by table), or None when unknown."""
    with conn.cursor() as cur:
        cur.execute("SELECT scenario, tenant_id, tenant_created FROM ye_run_runs WHERE run_id = %s", (run_id,))
        row = cur.fetchone()
        if row is None:
            conn.rollback()
            return None
        cur.execute("SELECT table_name, row_key FROM ye_run_seeded WHERE run_id = %s", (run_id,))
        seeded = cur.fetchall()
    conn.rollback()
    rows = tuple((table, tuple(key)) for table, key in seeded)
    job = SeededJob(0, "", row[1], "", (), rows)
    return RunRecord(run_id, row[0], row[1], row[2], [job])


RECORD_SHAPE = "expected {run_id, scenario, tenant_id: strings, rows: {table: [[key values]]}}"


def from_json(doc: dict) -> RunRecord:
    """A run as its JSON report recorded it (`ye-run cleanup --report`); ValueError when malformed."""
    texts = [doc["run_id"], doc["scenario"], doc["tenant_id"]]
    if not all(isinstance(t, str) for t in texts) or not isinstance(doc["rows"], dict):
        raise ValueError("run_id, scenario and tenant_id must be strings, rows a mapping")
    rows = []
    for table, keys in doc["rows"].items():
        if not isinstance(keys, list) or not all(isinstance(k, list) and k and all(
                isinstance(v, (str, int)) and not isinstance(v, bool) for v in k) for k in keys):
            raise ValueError(f"rows.{table} must be a list of primary keys (lists of strings or numbers)")
        rows.extend((table, tuple(key)) for key in keys)
    job = SeededJob(0, "", doc["tenant_id"], "", (), tuple(rows))
    return RunRecord(doc["run_id"], doc["scenario"], doc["tenant_id"], bool(doc.get("tenant_created", False)), [job])


DERIVED_TABLES = frozenset({"jobs_variants", "job_inputs"})
"""Rows found again from their job (foreign key or job_id), so the registry does not store them."""


def seeded_rows_sql(run_id: str, rows: list[tuple[str, tuple]]) -> tuple[str, list]:
    """An INSERT recording a job's root rows in ye_run_seeded (inside the seed's transaction)."""
    rows = [(table, key) for table, key in rows if table not in DERIVED_TABLES]
    values = ", ".join(["(%s, %s, %s::jsonb)"] * len(rows))
    params: list = []
    for table, key in rows:
        params.extend([run_id, table, json.dumps(list(key))])
    return f"INSERT INTO ye_run_seeded (run_id, table_name, row_key) VALUES {values}", params


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run as `ye-run runs` lists it."""

    run_id: str
    scenario: str
    tenant_id: str
    age: float
    """Seconds since it started."""
    outcome: str | None
    rows_kept: int
    """Rows it recorded as seeded that no cleanup has removed (0 once cleaned)."""


def runs(conn: psycopg2.extensions.connection, kept_only: bool = False) -> list[RunSummary]:
    """The registry's runs, newest first; `kept_only`: those not cleaned up yet."""
    with conn.cursor() as cur:
        cur.execute("SELECT r.run_id, r.scenario, r.tenant_id, extract(epoch FROM now() - r.started_at)::float8, "
                    "r.outcome, CASE WHEN r.cleaned_at IS NULL THEN (SELECT count(*) FROM ye_run_seeded s "
                    "WHERE s.run_id = r.run_id) ELSE 0 END FROM ye_run_runs r "
                    "WHERE NOT %s OR r.cleaned_at IS NULL ORDER BY r.started_at DESC", (kept_only,))
        found = [RunSummary(*row) for row in cur.fetchall()]
    conn.rollback()
    return [run for run in found if run.rows_kept or not kept_only]

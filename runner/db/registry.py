"""What a run created: always in memory (and in its report), and in ye_run_* tables when present."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import psycopg2.extensions

from runner.db import liveness
from runner.db.connect import autocommitted


def new_run_id() -> str:
    """`20261126T101500-3fa9c1`: sortable by time, unique by its random tail."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def isolated_tenant(tenant_id: str, run_id: str) -> str:
    return f"{tenant_id}_{run_id.rsplit('-', 1)[-1]}"


def new_record(scenario: str, tenant_id: str, isolate: bool) -> RunRecord:
    """A new run's record: a fresh run id, and its tenant (one of its own, named after the run, with `isolate`)."""
    run_id = new_run_id()
    return RunRecord(run_id, scenario, isolated_tenant(tenant_id, run_id) if isolate else tenant_id)


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


class _Keys:
    """One table's seeded primary keys, in order. While every key is one canonical UUID string (the pipeline's
    tables), each costs 16 bytes: a 10,000-job run's record stays about a megabyte."""

    __slots__ = ("packed", "other")

    def __init__(self) -> None:
        self.packed: bytearray | None = bytearray()
        self.other: list[tuple] = []

    def add(self, key: tuple) -> None:
        if self.packed is not None:
            packed = _uuid_bytes(key)
            if packed is not None:
                self.packed += packed
                return
            self.other = self.keys()
            self.packed = None
        self.other.append(key)

    def keys(self) -> list[tuple]:
        return list(self)

    def __iter__(self) -> Iterator[tuple]:
        if self.packed is None:
            yield from self.other
            return
        data = bytes(self.packed)
        for i in range(0, len(data), 16):
            yield (str(uuid.UUID(bytes=data[i:i + 16])),)


def _uuid_bytes(key: tuple) -> bytes | None:
    if len(key) != 1 or not isinstance(key[0], str) or len(key[0]) != 36:
        return None
    try:
        value = uuid.UUID(key[0])
    except ValueError:
        return None
    return value.bytes if str(value) == key[0] else None


@dataclass
class RunRecord:
    """The rows a run created, table by table; the source of truth for its cleanup."""

    run_id: str
    scenario: str
    tenant_id: str
    tenant_created: bool = False
    jobs: int = 0
    """How many jobs it seeded (their rows are in `rows()`)."""
    _keys: dict[str, _Keys] = field(default_factory=dict, repr=False)

    def add(self, rows: Iterable[tuple[str, tuple]], job: bool = True) -> None:
        """Record a seeded job's rows (or, with `job=False`, rows read back from a registry or a report)."""
        for table, key in rows:
            self._keys.setdefault(table, _Keys()).add(tuple(key))
        self.jobs += job

    @property
    def job_ids(self) -> list[str]:
        """The jobs this run seeded, from the recorded rows (also for runs loaded from the registry)."""
        return [str(key[0]) for key in self.rows().get("jobs", [])]

    def rows(self) -> dict[str, list[tuple]]:
        return {table: keys.keys() for table, keys in self._keys.items()}

    def iter_rows(self) -> Iterator[tuple[str, Iterator[tuple]]]:
        """`rows()` one key at a time: a writer never holds a long run's keys as Python objects all at once."""
        return ((table, iter(keys)) for table, keys in self._keys.items())

    def to_json(self) -> dict:
        return self.json_with(lambda keys: [list(k) for k in keys])

    def json_with(self, keys: Callable[[Iterator[tuple]], Any]) -> dict:
        """The record as its report shows it, each table's keys made by `keys` (a list, or a lazy writer's)."""
        return {"run_id": self.run_id, "scenario": self.scenario, "tenant_id": self.tenant_id,
                "tenant_created": self.tenant_created,
                "rows": {table: keys(found) for table, found in self.iter_rows()}}


def start(conn: psycopg2.extensions.connection, record: RunRecord,
          stale_after: float = liveness.DEFAULT_STALE) -> None:
    """Register the run with its owner, and take its lock on `conn` (held until the connection closes):
    from here on no cleaner touches its rows. `stale_after`: seconds of silence after which a run that lost its
    lock counts as gone (its reconnect window and two heartbeats)."""
    owner = liveness.Owner.this_process()
    with autocommitted(conn), conn.cursor() as cur:  # one message, one implicit transaction
        cur.execute("INSERT INTO ye_run_runs (run_id, scenario, tenant_id, owner_host, owner_pid, owner_token, "
                    "seen_at, stale_after) VALUES (%s, %s, %s, %s, %s, %s, now(), make_interval(secs => %s)); "
                    + liveness.claim_sql(),
                    (record.run_id, record.scenario, record.tenant_id, owner.host, owner.pid, owner.token,
                     stale_after, record.run_id, record.tenant_id))
    conn.commit()


def claim(conn: psycopg2.extensions.connection, record: RunRecord, registered: bool) -> bool:
    """The run's locks (again, after a reconnect), and a sign of life where the run is registered; False when a
    cleaner removed the run while it had no lock (it is no longer in the registry, or marked cleaned)."""
    with autocommitted(conn), conn.cursor() as cur:  # one message, one implicit transaction
        if registered:
            cur.execute(liveness.claim_sql() + "; UPDATE ye_run_runs SET seen_at = now() WHERE run_id = %s "
                        "AND cleaned_at IS NULL RETURNING 1", (record.run_id, record.tenant_id, record.run_id))
            ours = cur.fetchone() is not None
        else:
            cur.execute(liveness.claim_sql(), (record.run_id, record.tenant_id))
            ours = True
    conn.commit()
    return ours


def heartbeat(conn: psycopg2.extensions.connection, run_id: str) -> None:
    """A sign of life for cleaners on other hosts, who cannot see this process (every `liveness.HEARTBEAT`)."""
    with autocommitted(conn), conn.cursor() as cur:
        cur.execute("UPDATE ye_run_runs SET seen_at = now() WHERE run_id = %s", (run_id,))
    conn.commit()


def finish(conn: psycopg2.extensions.connection, record: RunRecord, outcome: str) -> None:
    with autocommitted(conn), conn.cursor() as cur:
        cur.execute("UPDATE ye_run_runs SET finished_at = now(), outcome = %s, tenant_created = %s "
                    "WHERE run_id = %s", (outcome, record.tenant_created, record.run_id))
    conn.commit()


def mark_cleaned(cur: psycopg2.extensions.cursor, run_id: str, deleted: int | None) -> None:
    """`deleted`: None where the registry predates its rows_deleted column (installed by an older ye-run)."""
    if deleted is None:
        cur.execute("UPDATE ye_run_runs SET cleaned_at = now(), cleanup_pending_until = NULL WHERE run_id = %s",
                    (run_id,))
        return
    cur.execute("UPDATE ye_run_runs SET cleaned_at = now(), cleanup_pending_until = NULL, rows_deleted = %s "
                "WHERE run_id = %s", (deleted, run_id))


def pend(conn: psycopg2.extensions.connection, run_id: str, seconds: float) -> None:
    """The run's cleanup waits for the pipeline, which may work on its rows for `seconds` more: `cleanup --pending`
    removes them after that."""
    with autocommitted(conn), conn.cursor() as cur:
        cur.execute("UPDATE ye_run_runs SET cleanup_pending_until = now() + make_interval(secs => %s) "
                    "WHERE run_id = %s", (seconds, run_id))
    conn.commit()


def pending(conn: psycopg2.extensions.connection) -> list[tuple[str, float]]:
    """Runs whose cleanup waits for the pipeline: (run id, seconds until it may be done; <= 0 when it is)."""
    with conn.cursor() as cur:
        cur.execute("SELECT run_id, extract(epoch FROM cleanup_pending_until - now())::float8 FROM ye_run_runs "
                    "WHERE cleanup_pending_until IS NOT NULL AND cleaned_at IS NULL ORDER BY started_at")
        found = cur.fetchall()
    conn.rollback()
    return found


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
    record = RunRecord(run_id, row[0], row[1], row[2])
    record.add(((table, tuple(key)) for table, key in seeded), job=False)
    return record


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
    record = RunRecord(doc["run_id"], doc["scenario"], doc["tenant_id"], bool(doc.get("tenant_created", False)))
    record.add(rows, job=False)
    return record


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
    """Root rows it seeded (jobs, assets, the tenant) that no cleanup has removed (0 once cleaned); a cleanup removes
    these and everything hanging off them (variants, inputs, what the pipeline wrote), so it deletes more."""
    status: liveness.Status
    """Whether it is still going, as a cleaner sees it."""
    rows_deleted: int | None = None
    """Rows its cleanup deleted, seeded and dependent (None: not cleaned up, or cleaned with its whole tenant)."""


def runs(conn: psycopg2.extensions.connection, kept_only: bool = False) -> list[RunSummary]:
    """The registry's runs, newest first; `kept_only`: those not cleaned up yet."""
    with conn.cursor() as cur:
        cur.execute("SELECT r.run_id, r.scenario, r.tenant_id, extract(epoch FROM now() - r.started_at)::float8, "
                    "r.outcome, CASE WHEN r.cleaned_at IS NULL THEN (SELECT count(*) FROM ye_run_seeded s "
                    "WHERE s.run_id = r.run_id) ELSE 0 END, (to_jsonb(r) ->> 'rows_deleted')::bigint FROM ye_run_runs r "
                    "WHERE NOT %s OR r.cleaned_at IS NULL ORDER BY r.started_at DESC", (kept_only,))
        rows = cur.fetchall()
        states = liveness.statuses(cur, [row[0] for row in rows])
    conn.rollback()
    found = [RunSummary(*row[:6], status=states[row[0]], rows_deleted=row[6]) for row in rows]
    return [run for run in found if run.rows_kept or not kept_only]


FAILING = ("failed", "error", "interrupted")
"""Outcomes `--last-failed` runs again."""
TIMED = ("passed", "failed", "seeded")
"""Outcomes whose run took its whole course: their durations balance shards (an error or interrupt cut it short)."""
RECENT_RUNS = 5


def last_failed(conn: psycopg2.extensions.connection, scenarios: list[str]) -> frozenset[str]:
    """Of these scenarios, those whose last finished run failed, errored or was interrupted."""
    with conn.cursor() as cur:
        cur.execute("SELECT scenario FROM (SELECT DISTINCT ON (scenario) scenario, outcome FROM ye_run_runs "
                    "WHERE scenario = ANY(%s) AND finished_at IS NOT NULL ORDER BY scenario, started_at DESC) last "
                    "WHERE outcome = ANY(%s)", (list(scenarios), list(FAILING)))
        found = frozenset(row[0] for row in cur.fetchall())
    conn.rollback()
    return found


def durations(conn: psycopg2.extensions.connection, scenarios: list[str]) -> dict[str, float]:
    """Seconds each scenario took: the median of its last RECENT_RUNS complete runs that finished before the current
    UTC day by the server's clock, so every machine of one night reads the same (none: absent)."""
    with conn.cursor() as cur:
        cur.execute("SELECT scenario, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds)::numeric, 3)::float8 "
                    "FROM (SELECT scenario, extract(epoch FROM finished_at - started_at) AS seconds, "
                    "row_number() OVER (PARTITION BY scenario ORDER BY started_at DESC) AS recent FROM ye_run_runs "
                    "WHERE scenario = ANY(%s) AND outcome = ANY(%s) AND finished_at IS NOT NULL "
                    "AND finished_at < date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') runs "
                    "WHERE recent <= %s GROUP BY scenario", (list(scenarios), list(TIMED), RECENT_RUNS))
        found = {name: seconds for name, seconds in cur.fetchall()}
    conn.rollback()
    return found

"""Observing every transition of the tracked jobs, in order, with both timestamps.

One dedicated autocommit connection LISTENs on the variant and job channels; LISTEN comes
first, then the tracked rows are read, then notifications are applied, and after any
reconnect the same again. Where ye-run's history table exists, transitions are read from it
with a cursor per row (a notification is only a wake-up), so the trace is complete even
across a dropped connection. Elsewhere the notifications are the transitions, and one query
for all tracked rows on a slow timer reconciles what was missed; the report then says gaps
were possible. A heartbeat query and TCP keepalives detect a dead or half-open connection;
losing it never fails a run by itself.
"""

from __future__ import annotations

import json
import logging
import select
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from runner.db.connect import Database
from runner.db.requirements import JOB_CHANNEL, VARIANT_CHANNEL
from runner.trace import Transition

log = logging.getLogger("ye_run.observe")
Method = Literal["history", "listen"]
_LOST = (psycopg2.OperationalError, psycopg2.InterfaceError)

_HISTORY = """
SELECT h.id, h.kind, h.row_id::text, h.job_id::text, h.current_step, h.status, h.retry_count, h.changed_at
FROM unnest(%s::uuid[], %s::bigint[]) AS c(row_id, after)
CROSS JOIN LATERAL (
    SELECT * FROM ye_run_history x WHERE x.row_id = c.row_id AND x.id > c.after ORDER BY x.id
) h
ORDER BY h.id
"""
"""A lookup per row on the (row_id, id) index. Written as LATERAL because a plain join lets the
planner choose a sequential scan of the whole history while the table has no statistics yet
(a fresh run's table), which made every read, and so the observation lag, grow with the table."""


@dataclass(frozen=True, slots=True)
class ObserveSettings:
    method: Method = "history"
    variant_channel: str = VARIANT_CHANNEL
    job_channel: str = JOB_CHANNEL
    heartbeat: float = 5.0
    """Seconds without traffic before a `SELECT 1` checks the connection."""
    reconcile: float = 2.0
    """Seconds between reads of every tracked row (the safety net for lost notifications)."""
    max_backoff: float = 2.0


@dataclass
class _Row:
    row_id: str
    job_id: str
    kind: str
    cursor: int = 0
    state: tuple[str, str] | None = None


@dataclass
class ObservationReport:
    method: Method
    complete: bool
    reconnects: int = 0
    notifications: int = 0
    queries: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def description(self) -> str:
        if self.method == "history":
            return "history table (every write, with its database time; no gaps possible)"
        return ("LISTEN/NOTIFY + a reconciling read of all tracked rows on a timer; transitions between "
                "two reads could have been missed, and repeated writes of the same state are invisible")


class Observer:
    def __init__(self, database: Database, settings: ObserveSettings, name: str = "ye-run listen",
                 cursor_factory: type | None = None):
        self.database = database
        self._cursor_factory = {"cursor_factory": cursor_factory} if cursor_factory else {}
        self.settings = settings
        self.name = name
        self.report = ObservationReport(settings.method, complete=settings.method == "history")
        self._rows: dict[str, _Row] = {}
        self._by_job: dict[str, list[str]] = {}
        self._dirty: set[str] = set()
        self._conn: psycopg2.extensions.connection | None = None
        self._next_attempt = 0.0
        self._backoff = 0.05
        self._last_traffic = time.monotonic()
        self._next_reconcile = time.monotonic() + settings.reconcile
        self._pending: list[Transition] = []

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """LISTEN before anything is seeded, so nothing can happen unobserved."""
        self._conn = self._connect()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg2.Error:
                pass
            self._conn = None

    @property
    def backend_pid(self) -> int | None:
        return self._conn.get_backend_pid() if self._conn is not None else None

    def _connect(self) -> psycopg2.extensions.connection:
        conn = self.database.connect(self.name, autocommit=True, keepalives=True, **self._cursor_factory)
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = '15s'")
            for channel in (self.settings.variant_channel, self.settings.job_channel):
                cur.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        self._last_traffic = time.monotonic()
        return conn

    # --- tracking -----------------------------------------------------------------------

    def track(self, job_id: str, variant_ids: list[str], seed: tuple[str, str], seeded_at: datetime,
              seeded_mono: float) -> list[Transition]:
        """Follow a job's rows; returns what is already known of them (the seeded state onwards)."""
        self._rows[job_id] = _Row(job_id, job_id, "j")
        for variant_id in variant_ids:
            self._rows[variant_id] = _Row(variant_id, job_id, "v")
        self._by_job[job_id] = [job_id, *variant_ids]
        if self.settings.method == "listen":
            out = [Transition(v, job_id, "v", seed[0], seed[1], seeded_at, seeded_at, seeded_mono, 0, "seed")
                   for v in variant_ids]
            out.append(Transition(job_id, job_id, "j", seed[0], seed[1], seeded_at, seeded_at, seeded_mono, None,
                                  "seed"))
            for transition in out:
                self._rows[transition.row_id].state = transition.state
            return out + self._guarded(lambda: self._read_states([job_id, *variant_ids]))
        # History mode: the new rows join the next batched read instead of costing a round trip now.
        self._dirty.update([job_id, *variant_ids])
        return []

    def untrack(self, job_id: str) -> None:
        for row_id in self._by_job.pop(job_id, []):
            self._rows.pop(row_id, None)
            self._dirty.discard(row_id)

    def refresh(self, job_id: str) -> list[Transition]:
        """Read a job's rows once more (before judging it), whatever the notifications said."""
        ids = list(self._by_job.get(job_id, []))
        reader = self._read_history if self.settings.method == "history" else self._read_states
        return self._guarded(lambda: reader(ids))

    # --- the poll -----------------------------------------------------------------------

    def poll(self, timeout: float) -> list[Transition]:
        """Wait up to `timeout` for activity; return the new transitions of tracked rows."""
        out, self._pending = self._pending, []
        if self._conn is None:
            self._reconnect(timeout)
            return out + self._drain_pending()
        try:
            if self._dirty and self.settings.method == "history":
                timeout = 0.0  # rows are waiting to be read: do not sleep first
            if select.select([self._conn], [], [], max(0.0, timeout))[0]:
                self._conn.poll()
            out += self._take_notifications()
            now = time.monotonic()
            if self._dirty and self.settings.method == "history":
                dirty, self._dirty = list(self._dirty), set()
                out += self._read_history(dirty)
            if now >= self._next_reconcile:
                self._next_reconcile = now + self.settings.reconcile
                reader = self._read_history if self.settings.method == "history" else self._read_states
                out += reader(list(self._rows))
            elif now - self._last_traffic >= self.settings.heartbeat:
                self._heartbeat()
        except _LOST as exc:
            self._lost(exc)
        return out

    def _drain_pending(self) -> list[Transition]:
        out, self._pending = self._pending, []
        return out

    def _guarded(self, read) -> list[Transition]:  # type: ignore[no-untyped-def]
        if self._conn is None:
            return []
        try:
            return read()
        except _LOST as exc:
            self._lost(exc)
            return []

    def _take_notifications(self) -> list[Transition]:
        assert self._conn is not None
        out: list[Transition] = []
        notes, self._conn.notifies[:] = list(self._conn.notifies), []
        for note in notes:
            self._last_traffic = time.monotonic()
            self.report.notifications += 1
            parsed = _parse(note.payload, note.channel == self.settings.job_channel)
            if parsed is None:
                continue
            row_id, job_id, kind, step, status, db_time = parsed
            row = self._rows.get(row_id)
            if row is None:
                continue
            if self.settings.method == "history":
                self._dirty.add(row_id)
            elif row.state != (step, status):
                row.state = (step, status)
                out.append(_transition(row, step, status, db_time, None, "notify"))
        return out

    def _heartbeat(self) -> None:
        assert self._conn is not None
        with self._conn.cursor() as cur:
            cur.execute("SELECT 1")
        self.report.queries += 1
        self._last_traffic = time.monotonic()

    # --- reads --------------------------------------------------------------------------

    def _read_history(self, row_ids: list[str]) -> list[Transition]:
        rows = [self._rows[r] for r in row_ids if r in self._rows]
        if not rows or self._conn is None:
            return []
        with self._conn.cursor() as cur:
            cur.execute(_HISTORY, ([r.row_id for r in rows], [r.cursor for r in rows]))
            fetched = cur.fetchall()
        self.report.queries += 1
        self._last_traffic = time.monotonic()
        out = []
        for history_id, _, row_id, _, step, status, retry_count, changed_at in fetched:
            row = self._rows[row_id]
            row.cursor = max(row.cursor, history_id)
            row.state = (step, status)
            out.append(_transition(row, step, status, changed_at, retry_count, "history"))
        return out

    def _read_states(self, row_ids: list[str]) -> list[Transition]:
        """Listen mode: the current state of the given rows; a change becomes a 'reconcile' transition."""
        variants = [r for r in row_ids if r in self._rows and self._rows[r].kind == "v"]
        jobs = [r for r in row_ids if r in self._rows and self._rows[r].kind == "j"]
        if self._conn is None or not (variants or jobs):
            return []
        found: list[tuple] = []
        with self._conn.cursor() as cur:
            if variants:
                cur.execute("SELECT job_variants_id::text, current_step, status, updated_at FROM jobs_variants "
                            "WHERE job_variants_id = ANY(%s::uuid[])", (variants,))
                found += cur.fetchall()
            if jobs:
                cur.execute("SELECT job_id::text, current_step, status, updated_at FROM jobs "
                            "WHERE job_id = ANY(%s::uuid[])", (jobs,))
                found += cur.fetchall()
        self.report.queries += 1 + bool(variants and jobs)
        self._last_traffic = time.monotonic()
        out = []
        for row_id, step, status, updated_at in found:
            row = self._rows[row_id]
            if row.state != (step, status):
                row.state = (step, status)
                out.append(_transition(row, step, status, updated_at, None, "reconcile"))
        return out

    # --- losing the connection ------------------------------------------------------------

    def _lost(self, exc: BaseException) -> None:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("observer: lost the LISTEN connection (%s); reconnecting", reason)
        self.report.notes.append(f"lost the LISTEN connection ({reason})")
        self.close()
        self._next_attempt = time.monotonic()
        self._backoff = 0.05

    def _reconnect(self, timeout: float) -> None:
        wait = max(0.0, min(timeout, self._next_attempt - time.monotonic()))
        if wait:
            time.sleep(wait)
        if time.monotonic() < self._next_attempt:
            return
        try:
            self._conn = self._connect()
        except Exception as exc:  # InfrastructureError or a driver error: keep trying, later
            self._next_attempt = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, self.settings.max_backoff)
            log.warning("observer: reconnect failed (%s); next try in %.1fs", exc, self._backoff)
            return
        self.report.reconnects += 1
        self.report.notes.append("reconnected and caught up" + (" from the history table"
                                                                 if self.settings.method == "history" else
                                                                 " by reading every tracked row"))
        log.warning("observer: reconnected; catching up")
        reader = self._read_history if self.settings.method == "history" else self._read_states
        self._pending += self._guarded(lambda: reader(list(self._rows)))


def _transition(row: _Row, step: str, status: str, db_time: datetime | None, retry_count: int | None,
                source: str) -> Transition:
    """Step and status are interned: a long run holds hundreds of thousands of transitions, a dozen distinct names."""
    return Transition(row.row_id, row.job_id, row.kind, _intern(step), _intern(status), db_time,
                      datetime.now(timezone.utc), time.monotonic(), retry_count, source)


def _intern(name: str) -> str:
    return sys.intern(name) if type(name) is str else name


def _parse(payload: str, job_channel: bool) -> tuple[str, str, str, str, str, datetime | None] | None:
    try:
        data = json.loads(payload)
        job_id = str(data["job_id"])
        row_id = job_id if job_channel else str(data["job_variants_id"])
        step, status = str(data["current_step"]), str(data["status"])
    except (ValueError, KeyError, TypeError):
        log.warning("observer: ignoring a malformed notification: %.200s", payload)
        return None
    stamp = data.get("updated_at")
    try:
        db_time = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        db_time = None
    return row_id, job_id, "j" if job_channel else "v", step, status, db_time

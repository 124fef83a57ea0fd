"""Observing every transition of the tracked jobs, in order, with both timestamps.

One autocommit connection LISTENs on the variant and job channels (the `ListenHub`'s, shared by
every scenario of a session); LISTEN comes first, then the tracked rows are read, then notifications
are applied, and after any reconnect the same again. Where ye-run's history table exists,
transitions are read from it with a cursor per row (a notification is only a wake-up), so the trace
is complete even across a dropped connection. ye-run's history triggers announce each record on
a channel of their own: the hub's thread turns it into the transition as it arrives, with no
query; a pipeline notification the records have not answered (triggers from an older ye-run)
makes the hub's thread read the row instead. Either way the transitions wait, in the order they
were seen, for the scenario's thread to take them. Elsewhere the notifications are the transitions, and
one query for all tracked rows on a slow timer reconciles what was missed; the report then says gaps
were possible. A heartbeat query and TCP keepalives detect a dead or half-open connection; losing it
never fails a run by itself.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal

import psycopg2.extensions

from runner.db.connect import Database
from runner.db.requirements import JOB_CHANNEL, VARIANT_CHANNEL
from runner.observe.hub import ListenHub, Lost
from runner.db.reconnect import Notified, Recorded
from runner.trace import Transition

Method = Literal["history", "listen"]
MAX_NOTES = 10
"""Reconnect notes a report keeps; past them, one line counts the rest."""

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
    coalesce: float = 0.0
    """History mode: seconds a read waits after the previous one while notifications keep coming, so a burst of
    writes costs one read, not one per wake-up; a notification the `urgent` test picks is read at once."""


@dataclass
class _Row:
    row_id: str
    job_id: str
    kind: str
    cursor: int = 0
    state: tuple[str, str] | None = None
    noted: tuple[str, str] | None = None
    """History mode: the state a pipeline notification named, not yet seen in a record (the row is read)."""
    at: datetime | None = None
    """Listen mode: the database time of the state held (a notification older than it is stale)."""


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
    """The transitions of one run's jobs. Notifications come from a `ListenHub` (the session's, shared by every
    scenario, or one of its own); reads go through the hub's connection."""

    def __init__(self, database: Database, settings: ObserveSettings, name: str = "ye-run listen",
                 cursor_factory: type | None = None, hub: ListenHub | None = None,
                 urgent: Callable[[Notified], bool] | None = None):
        self.database = database
        self._urgent = urgent
        """Which notifications are read at once despite `coalesce` (a state a job may be judged in)."""
        self._hurry = False
        self._last_read = -float("inf")
        self._cursor_factory = cursor_factory
        self.settings = settings
        self.name = name
        self.report = ObservationReport(settings.method, complete=settings.method == "history")
        self._rows: dict[str, _Row] = {}
        self._by_job: dict[str, list[str]] = {}
        self._dirty: set[str] = set()
        self._hub = hub
        self._own_hub = hub is None
        self._next_reconcile = time.monotonic() + settings.reconcile
        self._pending: list[Transition] = []
        self._ready: list[Transition] = []
        """History mode: what reads found, in read order, whichever thread read; taken by poll and refresh."""
        self._lock: threading.RLock = threading.RLock()
        """The hub's, once started: rows, cursors and `_ready` change only under it."""
        self._inbox: list[Notified] = []
        self._inbox_lock = threading.Lock()
        self._wake = threading.Event()
        self._catch_up = False
        self._dropped = 0
        self._announcing = False
        """History mode: the history triggers announce their records (a pipeline notification is then redundant:
        the record it stands for is announced in the same commit; before, each one means a read)."""

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """LISTEN before anything is seeded, so nothing can happen unobserved."""
        if self._hub is None:
            self._hub = ListenHub(self.database, (self.settings.variant_channel, self.settings.job_channel),
                                  self.settings.heartbeat, self.name, self.settings.max_backoff)
            self._hub.start()
        self._lock = self._hub.lock
        self._hub.attach(self)

    def close(self) -> None:
        hub, self._hub = self._hub, None
        if hub is None:
            return
        hub.detach(self)
        if self._own_hub:
            hub.close()

    @property
    def backend_pid(self) -> int | None:
        return self._hub.backend_pid if self._hub is not None else None

    # --- from the hub's thread ----------------------------------------------------------------

    def notified(self, note: Notified) -> None:
        with self._inbox_lock:
            self._inbox.append(note)
        if self.settings.method != "history" or self._catch_up:
            self._wake.set()  # history mode: `delivered`, after the batch, wakes the scenario's thread if need be

    def recorded(self, record: Recorded) -> None:
        """History mode: a record its trigger announced is the transition itself, seen without a read (one at or
        before the row's cursor was read already). While a catch-up read is due, or when the announcement cut the
        step or status short, the row is read instead: a cursor moved past what the loss hid would skip it."""
        row = self._rows.get(record.row_id)
        if self.settings.method != "history" or row is None:
            return
        self.report.notifications += 1
        self._announcing = True
        if self._catch_up or record.cut or row.cursor == 0:  # row.cursor 0: its earlier records are not read yet
            self._dirty.add(row.row_id)
            self._hurry = True
            return
        if record.id <= row.cursor:
            return
        row.cursor, row.state = record.id, (record.step, record.status)
        if row.noted == row.state:  # what the pipeline's notification named: no read needed for it any more
            self._dirty.discard(row.row_id)
            row.noted = None
        self._ready.append(_transition(row, record.step, record.status, record.db_time, record.retry_count,
                                       "history"))

    def delivered(self) -> float | None:
        """History mode, after a batch (the hub's thread, its lock held): wake the scenario's thread for the records
        announced, and read the rows still to read (no record answered their notification, or they were never
        read) now, not when the scenario's thread is next free; within `coalesce` of the last read and nothing
        urgent, once that has passed (returned: the hub asks again then). Listen mode: nothing (its notifications
        are the transitions, taken by poll)."""
        if self.settings.method != "history" or self._catch_up:
            return None
        if self._ready:
            self._wake.set()  # once for the whole batch the hub handed over
        with self._inbox_lock:
            notes, self._inbox = self._inbox, []
        self._apply_notifications(notes)
        if not self._dirty:
            return None
        due = self._last_read + self.settings.coalesce
        if not self._hurry and time.monotonic() < due:
            return due
        self._read_dirty()
        self._wake.set()
        return None

    def lost(self, reason: str) -> None:
        self._note(f"lost the LISTEN connection ({reason})")

    def reconnected(self) -> None:
        self.report.reconnects += 1
        self._note("reconnected and caught up" + (" from the history table" if self.settings.method == "history"
                                                   else " by reading every tracked row"))
        self._catch_up = True
        self._wake.set()

    def _note(self, text: str) -> None:
        """The first notes as they were; past MAX_NOTES, one line counting the rest (a flapping link would
        otherwise add two lines per reconnect to the report)."""
        notes = self.report.notes
        if len(notes) < MAX_NOTES:
            notes.append(text)
            return
        self._dropped += 1
        notes[-1] = (f"... and {self._dropped + 1} more note(s) like these "
                     f"({self.report.reconnects} reconnect(s) in all)")

    # --- tracking -----------------------------------------------------------------------

    def track(self, job_id: str, variant_ids: list[str], seed: tuple[str, str], seeded_at: datetime,
              seeded_mono: float) -> list[Transition]:
        """Follow a job's rows; returns what is already known of them (the seeded state onwards)."""
        with self._lock:
            self._rows[job_id] = _Row(job_id, job_id, "j")
            for variant_id in variant_ids:
                self._rows[variant_id] = _Row(variant_id, job_id, "v")
            self._by_job[job_id] = [job_id, *variant_ids]
        if self._hub is not None:
            self._hub.route([job_id, *variant_ids], self)
        if self.settings.method == "listen":
            out = [Transition(v, job_id, "v", seed[0], seed[1], seeded_at, seeded_at, seeded_mono, 0, "seed")
                   for v in variant_ids]
            out.append(Transition(job_id, job_id, "j", seed[0], seed[1], seeded_at, seeded_at, seeded_mono, None,
                                  "seed"))
            for transition in out:
                self._rows[transition.row_id].state = transition.state
            return out + self._read_states([job_id, *variant_ids])
        # History mode: the new rows join the next batched read instead of costing a round trip now.
        with self._lock:
            self._dirty.update([job_id, *variant_ids])
        return []

    def untrack(self, job_id: str) -> None:
        with self._lock:
            rows = self._by_job.pop(job_id, [])
            if self._hub is not None:
                self._hub.unroute(rows)
            for row_id in rows:
                self._rows.pop(row_id, None)
                self._dirty.discard(row_id)

    def refresh(self, job_id: str) -> list[Transition] | None:
        """Read a job's rows once more (before judging it), whatever the notifications said; None when the
        connection is gone (the job must wait: its trace may be missing what happened meanwhile). In history
        mode what earlier reads found comes with it, first: every transition leaves in read order."""
        found = self._read(self._reader_for(), list(self._by_job.get(job_id, [])))
        return None if found is None else found + self._take_ready()

    @property
    def caught_up(self) -> bool:
        """Whether the traces are whole: connected, and nothing is waiting to be read again after a loss."""
        return self._hub is not None and self._hub.connected and not self._catch_up

    # --- the poll -----------------------------------------------------------------------

    def poll(self, timeout: float) -> list[Transition]:
        """Wait up to `timeout` for activity; return the new transitions of tracked rows."""
        out, self._pending = self._pending + self._take_ready(), []
        if not out and not self._catch_up and not (self._dirty and self.settings.method == "history"):
            self._wake.wait(max(0.0, timeout))
        self._wake.clear()
        with self._inbox_lock:
            notes, self._inbox = self._inbox, []
        # A reconnect sets the catch-up before the new connection delivers anything: the rows are read again
        # before the notifications taken with it are applied (older ones than what was read are then dropped).
        out += self._catch_up_read()
        with self._lock:
            out += self._apply_notifications(notes)
        if self._dirty and self.settings.method == "history" and self._coalesced(timeout):
            self._read_dirty()
        now = time.monotonic()
        if now >= self._next_reconcile:
            self._next_reconcile = now + self.settings.reconcile
            out += self._reader(list(self._rows))
        return out + self._take_ready()

    def _read_dirty(self) -> None:
        """History mode: one read of every row named since the last (its transitions go to `_ready`)."""
        with self._lock:
            dirty, self._dirty, self._hurry = list(self._dirty), set(), False
            self._last_read = time.monotonic()
            self._read_history(dirty)

    def _take_ready(self) -> list[Transition]:
        with self._lock:
            out, self._ready = self._ready, []
        return out

    def _coalesced(self, timeout: float) -> bool:
        """Whether the dirty rows are read now: at once when urgent, else once `coalesce` has passed since the last
        read (waiting for it within `timeout`, taking in what arrives meanwhile). False: the next poll reads."""
        due = self._last_read + self.settings.coalesce
        until = min(due, time.monotonic() + max(0.0, timeout))
        while not self._hurry and not self._catch_up and time.monotonic() < until:
            self._wake.wait(until - time.monotonic())
            self._wake.clear()
            with self._inbox_lock:
                notes, self._inbox = self._inbox, []
            with self._lock:
                self._pending += self._apply_notifications(notes)
        return self._hurry or self._catch_up or time.monotonic() >= due

    def _catch_up_read(self) -> list[Transition]:
        """After a reconnect: every tracked row read again (it stays pending while the connection is gone)."""
        if not self._catch_up:
            return []
        self._catch_up = False
        caught = self._read(self._reader_for(), list(self._rows))
        if caught is None:
            self._catch_up = True
        return caught or []

    def _apply_notifications(self, notes: list[Notified]) -> list[Transition]:
        out: list[Transition] = []
        for note in notes:
            self.report.notifications += 1
            row = self._rows.get(note.row_id)
            if row is None:
                continue
            if self.settings.method == "history":
                if self._announcing or row.state == (note.step, note.status):
                    continue  # every record is announced (its own is on its way), or the newest already says so
                row.noted = (note.step, note.status)
                self._dirty.add(note.row_id)
                self._hurry = self._hurry or self._urgent is None or self._urgent(note)
            elif _older(note.db_time, row.at):
                continue  # sent before the state a reconciling read already gave: applying it would go back
            elif row.state != (note.step, note.status):
                row.state, row.at = (note.step, note.status), note.db_time or row.at
                out.append(_transition(row, note.step, note.status, note.db_time, None, "notify"))
        return out

    # --- reads --------------------------------------------------------------------------

    def _reader_for(self) -> Callable[[psycopg2.extensions.connection, list[str]], list[Transition]]:
        return self._history_on if self.settings.method == "history" else self._states_on

    def _reader(self, row_ids: list[str]) -> list[Transition]:
        return self._read(self._reader_for(), row_ids) or []

    def _read(self, reader: Callable[[psycopg2.extensions.connection, list[str]], list[Transition]],
              row_ids: list[str]) -> list[Transition] | None:
        """A read on the hub's connection; None when it has none (the hub reconnects, then everything is read)."""
        if self._hub is None or not any(r in self._rows for r in row_ids):
            return []
        try:
            return self._hub.query(lambda conn: reader(conn, row_ids))
        except Lost:
            self._catch_up = True
            return None

    def _read_history(self, row_ids: list[str]) -> list[Transition]:
        return self._read(self._history_on, row_ids) or []

    def _read_states(self, row_ids: list[str]) -> list[Transition]:
        return self._read(self._states_on, row_ids) or []

    def _cursor(self, conn: psycopg2.extensions.connection) -> psycopg2.extensions.cursor:
        return conn.cursor(cursor_factory=self._cursor_factory) if self._cursor_factory else conn.cursor()

    def _history_on(self, conn: psycopg2.extensions.connection, row_ids: list[str]) -> list[Transition]:
        rows = [self._rows[r] for r in row_ids if r in self._rows]
        with self._cursor(conn) as cur:
            cur.execute(_HISTORY, ([r.row_id for r in rows], [r.cursor for r in rows]))
            fetched = cur.fetchall()
        self.report.queries += 1
        for row in rows:
            row.noted = None
        out = []
        for history_id, _, row_id, _, step, status, retry_count, changed_at in fetched:
            row = self._rows[row_id]
            row.cursor = max(row.cursor, history_id)
            row.state = (step, status)
            out.append(_transition(row, step, status, changed_at, retry_count, "history"))
        self._ready += out  # under the hub's lock with the cursors: transitions leave in the order they were read
        return []

    def _states_on(self, conn: psycopg2.extensions.connection, row_ids: list[str]) -> list[Transition]:
        """Listen mode: the current state of the given rows; a change becomes a 'reconcile' transition."""
        variants = [r for r in row_ids if r in self._rows and self._rows[r].kind == "v"]
        jobs = [r for r in row_ids if r in self._rows and self._rows[r].kind == "j"]
        found: list[tuple] = []
        with self._cursor(conn) as cur:
            if variants:
                cur.execute("SELECT job_variants_id::text, current_step, status, updated_at FROM jobs_variants "
                            "WHERE job_variants_id = ANY(%s::uuid[])", (variants,))
                found += cur.fetchall()
            if jobs:
                cur.execute("SELECT job_id::text, current_step, status, updated_at FROM jobs "
                            "WHERE job_id = ANY(%s::uuid[])", (jobs,))
                found += cur.fetchall()
        self.report.queries += 1 + bool(variants and jobs)
        out = []
        for row_id, step, status, updated_at in found:
            row = self._rows[row_id]
            if row.state != (step, status):
                row.state, row.at = (step, status), updated_at or row.at
                out.append(_transition(row, step, status, updated_at, None, "reconcile"))
        return out


def _older(stamp: datetime | None, than: datetime | None) -> bool:
    """Whether a notification's time is before the held state's (comparable only when both carry a zone)."""
    if stamp is None or than is None or stamp.tzinfo is None or than.tzinfo is None:
        return False
    return stamp < than


def _transition(row: _Row, step: str, status: str, db_time: datetime | None, retry_count: int | None,
                source: str) -> Transition:
    """Step and status are interned: a long run holds hundreds of thousands of transitions, a dozen distinct names."""
    return Transition(row.row_id, row.job_id, row.kind, _intern(step), _intern(status), db_time,
                      datetime.now(timezone.utc), time.monotonic(), retry_count, source)


def _intern(name: str) -> str:
    return sys.intern(name) if type(name) is str else name

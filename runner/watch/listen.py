"""Watching without ye-run's history table: the pipeline's notifications are the writes, reconciling reads fill in.

The same interface as `HistorySource` (open, poll, facts, now, close), on one autocommit connection. The
pipeline's triggers send each change of (current_step, status) with the row's new state
(`job_variant_state_changed`, `job_state_changed`), in commit order: on a live connection none is lost. What they
do not send: a row's INSERT, a write that leaves the state as it was (the reference trigger fires only on a change;
the deployment's also on other columns, so a repeated state cannot be told from another column's write: it is
dropped), and anything committed while the connection is down. A *reconciling read* covers the rest: the current
state of every row of the jobs in flight, every few seconds, at once after a reconnect (then also every job created
since shortly before the loss), and at once for a job whose notification carries no state.

A read and the notifications are put in one order with a barrier: the read's statement also sends a token on a
channel of this watch's own, delivered after every notification of a transaction that committed before it. So once
the token is in, a state the read found that no notification explains was written without one: it becomes a
`reconcile` write, which the checker takes as a possible gap (a forward jump not judged as a skip). Live, a read
holds nothing back: notifications are handed on as they come, and the read is settled when its token arrives. After
a reconnect, each row's first move is such a write too (what happened meanwhile is not known), and nothing is handed
on before the read is settled. Writes are stamped
with the database's clock when they are received (a payload's updated_at is the application's to keep).
"""

from __future__ import annotations

import itertools
import json
import logging
import select
import time
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from runner.db import reconnect
from runner.db.connect import Database
from runner.db.requirements import JOB_CHANNEL, VARIANT_CHANNEL
from runner.errors import InfrastructureError, InputError
from runner.watch.link import Link, pairs
from runner.watch.source import INSTALL_HINT, READ_ONLY, JobFacts, Write

log = logging.getLogger("ye_run.watch")
BACK = ("reconnected; reading every row in flight again (what happened meanwhile is seen only as where it "
        "led)")
DESCRIPTION = ("LISTEN + reconciling reads (writes between two reads can be missed: install the history with "
               "`ye-run db init --runner-only` for a complete trace)")
RECONCILE = 5.0
"""Seconds between reconciling reads of every row of the jobs in flight (one statement each; with none in flight,
it still checks the connection)."""
MARGIN = timedelta(seconds=60)
"""After a reconnect, jobs created up to this long before the last contact are looked for too (a job inserted and
finished while the connection was down sent nothing this watch received)."""
TOKEN_WAIT = 30.0
"""Seconds to wait for a read's own token before taking the connection for lost."""

_CHECK = """
SELECT to_regclass('jobs') IS NOT NULL AND to_regclass('jobs_variants') IS NOT NULL,
       to_regclass('ye_run_seeded') IS NOT NULL
"""
_GRANTS = """
SELECT has_table_privilege('jobs', 'SELECT') AND has_table_privilege('jobs_variants', 'SELECT'),
       EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'jobs'::regclass AND attname = 'created_at'
               AND NOT attisdropped),
       CASE WHEN %s THEN has_table_privilege('ye_run_seeded', 'SELECT') ELSE false END
"""
_FACTS = """
SELECT q.job_id::text, j.tenant_id, j.created_at,
       ARRAY(SELECT v.job_variants_id::text || ':' || v.creation_order FROM jobs_variants v
             WHERE v.job_id = q.job_id ORDER BY v.creation_order)
FROM unnest(%s::uuid[]) AS q(job_id)
LEFT JOIN jobs j ON j.job_id = q.job_id
"""
"""Per job: its tenant, its variants (creation order), and when it was created (is it in the window?)."""
_READ = """
WITH chosen AS ({chosen})
SELECT n.now, r.kind, r.row_id, r.job_id, r.current_step, r.status
FROM (SELECT clock_timestamp() AS now, pg_notify(%(channel)s, %(token)s)) n
LEFT JOIN LATERAL (
    SELECT 'v' AS kind, v.job_variants_id::text AS row_id, v.job_id::text AS job_id, v.current_step, v.status
    FROM jobs_variants v JOIN chosen c ON c.job_id = v.job_id
    UNION ALL
    SELECT 'j', j.job_id::text, j.job_id::text, j.current_step, j.status
    FROM jobs j JOIN chosen c ON c.job_id = j.job_id
) r ON true
"""
"""The reconciling read: every row of the chosen jobs (variants first: a job row follows its variants), and the
token (sent when the statement commits)."""
_CHOSEN = "SELECT job_id FROM jobs WHERE job_id = ANY(%(jobs)s::uuid[])"
_CHOSEN_SINCE = _CHOSEN + " OR created_at >= %(created)s"

State = tuple[str, str]


class Note(NamedTuple):
    """One notification on a pipeline channel: its row (None: the payload names only the job), and its state
    (None: the payload carries none; the row is read instead)."""

    kind: str
    row_id: str | None
    job_id: str
    state: State | None


def parse(channel: str, payload: str, job_channel: str = JOB_CHANNEL) -> Note | None:
    """A payload as the reference and the deployment send it; None when it names no job (logged)."""
    try:
        data = json.loads(payload)
        job_id = str(data["job_id"])
    except (ValueError, KeyError, TypeError):
        log.warning("watch: ignoring a notification on %s that names no job: %.200s", channel, payload)
        return None
    kind = "j" if channel == job_channel else "v"
    row = job_id if kind == "j" else data.get("job_variants_id")
    step, status = data.get("current_step"), data.get("status")
    state = (str(step), str(status)) if step is not None and status is not None else None
    return Note(kind, str(row) if row is not None else None, job_id, state)


@dataclass(frozen=True, slots=True)
class ListenWindow:
    """Which jobs are judged: those created (jobs.created_at) at or after the watch began listening."""

    start: datetime
    end_id: None = None
    """Never a closing id: without the history there is no --once."""

    def holds(self, facts: JobFacts) -> bool:
        return facts.first_at is not None and facts.first_at >= self.start


@dataclass
class _Row:
    kind: str
    state: State | None = None
    """The last state handed on (None: none yet; the row is at its first state as far as the judge knows)."""
    sure: bool = True
    """Every write of it since `state` is known to come as a notification (false after a reconnect, until its
    first move or a read proves it did not move)."""
    since: set[State] = field(default_factory=set)
    """States notified since its last reconciling read: a read that finds one of them is explained."""


@dataclass
class _Job:
    whole: bool
    """Rows not seen yet are sure: the job was created after this connection began listening, or read since."""
    rows: dict[str, _Row] = field(default_factory=dict)
    fresh: bool = True
    """Not yet through a prune: kept even before the loop follows it."""

    def row(self, row_id: str, kind: str) -> _Row:
        found = self.rows.get(row_id)
        if found is None:
            found = self.rows[row_id] = _Row(kind, sure=self.whole)
        return found


@dataclass
class _Barrier:
    token: str
    read: dict[str, tuple[str, str, State]]
    """row_id -> (kind, job_id, state) as the read found it (variants first)."""
    at: datetime
    """The database's clock when it read: the time given to what only it saw (every such state was reached by
    then), one time for all, so a job row is never stamped before the variants it followed."""
    catch_up: bool
    deadline: float
    """When the token must have come by (monotonic clock): else the connection is taken for lost."""
    held: list[Note] = field(default_factory=list)
    """After a reconnect: the notifications that came before the token, handed on once the read is settled."""


class ListenSource(Link):
    """The pipeline's notifications read forward from the moment the watch LISTENs; `poll` returns the next writes."""

    description = DESCRIPTION

    def __init__(self, database: Database, name: str = "ye-run watch", read_only: bool = True,
                 channels: tuple[str, ...] = (VARIANT_CHANNEL, JOB_CHANNEL), reconnect_window: float | None = None,
                 in_flight: Callable[[], Collection[str]] = frozenset,
                 known: Callable[[str], bool] = lambda job_id: False, reconcile: float = RECONCILE):
        super().__init__(database, name, read_only, channels, reconnect_window)
        self.job_channel = channels[-1]
        self.in_flight = in_flight
        """The jobs the loop follows: their rows are the ones read again."""
        self.known = known
        """Whether the loop knows a job already (followed, judged, or outside the scope): its facts are not read."""
        self.reconcile = reconcile
        self.window: ListenWindow | None = None
        self.after = 0
        self.gaps: dict[int, int] = {}
        self.done = False
        self.notifications = 0
        self.reconciled = 0
        """Writes only a reconciling read saw."""
        self._sync = f"ye_run_watch_{uuid.uuid4().hex[:12]}"
        self._tokens = itertools.count(1)
        self._jobs: dict[str, _Job] = {}
        self._facts: dict[str, JobFacts] = {}
        """Facts read while polling, handed to the loop by `facts` (cleared at the next poll)."""
        self._out: list[Write] = []
        """Writes made and not returned yet (kept across a lost connection)."""
        self._serial = itertools.count(1)
        self._stamp: datetime | None = None
        self._listen_at: datetime | None = None
        self._contact: datetime | None = None
        """The database's clock at the last sign of the connection."""
        self._lost_at: datetime | None = None
        """The last sign before the connection was lost (kept until caught up): where to look back from."""
        self._catch_up = False
        self._dirty: set[str] = set()
        """Jobs a notification without a state named: read at once."""
        self._next_read = 0.0
        self._barrier: _Barrier | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def open(self, since: timedelta | None = None, once: bool = False) -> ListenWindow:
        """Connect, check the tables are readable, LISTEN, and start the window now."""
        if since is not None or once:
            raise InputError(f"--since and --once read the past from ye-run's history table, which LISTEN alone "
                             f"cannot: where {self.database.display} has no ye_run_history table, {INSTALL_HINT}; "
                             "or drop --since/--once to watch live (LISTEN + reconciling reads)")
        conn = self._connect()
        self._check(conn)
        self.window = ListenWindow(self._listen_at)  # type: ignore[arg-type]
        self._next_read = time.monotonic() + self.reconcile
        return self.window

    def give_up_gaps(self) -> int:
        return 0

    def _connect(self) -> psycopg2.extensions.connection:
        extra = {"options": READ_ONLY} if self.read_only else {}
        conn = self.database.connect(self.name, autocommit=True, keepalives=True, **extra)
        try:
            with conn.cursor() as cur:
                for channel in (*self.channels, self._sync):
                    cur.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self.queries += 1
                cur.execute("SELECT clock_timestamp()")
                self.queries += 1
                self._clock(cur.fetchone()[0])
        except psycopg2.Error:
            conn.close()
            raise
        self._listen_at = self._contact = self.db_now
        self._conn = conn
        return conn

    def _check(self, conn: psycopg2.extensions.connection) -> None:
        with conn.cursor() as cur:
            cur.execute(_CHECK)
            tables, seeded = cur.fetchone()
            self.queries += 1
            if not tables:
                self.close()
                raise InputError(f"{self.database.display} has no jobs and jobs_variants tables: is it the "
                                 "pipeline's database?")
            cur.execute(_GRANTS, (seeded,))
            readable, created_at, seeded = cur.fetchone()
            self.queries += 1
        if not readable:
            self.close()
            raise InfrastructureError("watch needs SELECT on jobs and jobs_variants (and LISTEN, which every role "
                                      "may do); grant them to the role it connects as")
        if not created_at:
            self.close()
            raise InputError(f"{self.database.display}: jobs has no created_at column, which watching without the "
                             f"history table needs to tell the jobs created after it started: {INSTALL_HINT}")
        self.seeded_readable = bool(seeded)

    def _clock(self, now: datetime) -> None:
        self.db_now, self.read_mono = now, time.monotonic()

    # --- reading ------------------------------------------------------------------------

    def poll(self, timeout: float, stop: object = None) -> list[Write]:
        """Wait up to `timeout` for notifications, then hand them on as writes; a reconciling read when one is
        due (settled when its token comes, on a later poll). A lost connection is waited out, then every row in
        flight is read again before anything else is handed on."""
        self._facts.clear()
        while True:
            try:
                conn = self._conn or self._reopen(BACK, stop)
                if conn is None:
                    break
                if self._catch_up:
                    self._read(conn, list(self._jobs), catch_up=True)
                    self._settled(conn)
                    self._catch_up, self._lost_at = False, None
                    self._dirty.clear()
                    break
                due = max(0.0, self._next_read - time.monotonic()) if self._barrier is None else TOKEN_WAIT
                if not self._out and not conn.notifies and not (self._dirty and self._barrier is None):
                    self._wait(conn, min(max(0.0, timeout), due))
                self._drain(conn)
                if self._barrier is not None:
                    if time.monotonic() > self._barrier.deadline:
                        raise psycopg2.OperationalError("the reconciling read's own notification never came")
                elif time.monotonic() >= self._next_read:
                    self._prune()
                    self._read(conn, list(self._jobs))
                    self._next_read = time.monotonic() + self.reconcile
                    self._dirty.clear()
                elif self._dirty:
                    dirty, self._dirty = list(self._dirty), set()
                    self._read(conn, dirty)
                self._drain(conn)  # the token often comes with the read's own reply
                break
            except psycopg2.Error as exc:
                if not reconnect.lost(exc):
                    raise
                self._lost(exc)
        out, self._out = self._out, []
        return out

    def _wait(self, conn: psycopg2.extensions.connection, timeout: float) -> None:
        if select.select([conn], [], [], timeout)[0]:
            conn.poll()

    def _drain(self, conn: psycopg2.extensions.connection) -> None:
        """Take every notification received, in order; a read's token settles that read where it stands."""
        conn.poll()
        pending, conn.notifies[:] = list(conn.notifies), []
        if not pending:
            return
        self._contact = self.now()
        notes: list[Note | str] = []
        for item in pending:
            if item.channel == self._sync:
                notes.append(item.payload)
            elif item.channel in self.channels:
                note = parse(item.channel, item.payload, self.job_channel)
                if note is not None:
                    notes.append(note)
        self._learn(conn, {n.job_id for n in notes if isinstance(n, Note)})
        for note in notes:
            if isinstance(note, str):
                if self._barrier is not None and note == self._barrier.token:
                    self._settle(self._barrier)
            elif self._barrier is not None and self._barrier.catch_up:
                self._barrier.held.append(note)
            else:
                self._take(note)

    def _take(self, note: Note) -> None:
        """A notification of a row: a write, unless it repeats the state already handed on."""
        self.notifications += 1
        job = self._jobs.get(note.job_id)
        if job is None:  # judged, or outside the scope (the loop ignores it), or its record was pruned
            if note.state is not None and note.row_id is not None:
                self._emit(note.kind, note.row_id, note.job_id, note.state, "notify")
            return
        if note.state is None or note.row_id is None:
            self._dirty.add(note.job_id)
            return
        row = job.row(note.row_id, note.kind)
        row.since.add(note.state)
        if note.state == row.state:
            return  # a repeated state cannot be told from a write of another column (the deployment's trigger)
        self._emit(note.kind, note.row_id, note.job_id, note.state, "notify" if row.sure else "reconcile")
        row.state, row.sure = note.state, True

    # --- the reconciling read -----------------------------------------------------------

    def _read(self, conn: psycopg2.extensions.connection, job_ids: list[str], catch_up: bool = False) -> None:
        """Read the rows of these jobs (after a reconnect: and of the jobs created since shortly before the loss),
        with a token; the read is settled when the token comes (`_drain`)."""
        token = f"{next(self._tokens)}"
        created = (self._lost_at or self.now()) - MARGIN if catch_up else None
        query = sql.SQL(_READ).format(chosen=sql.SQL(_CHOSEN_SINCE if catch_up else _CHOSEN))
        with conn.cursor() as cur:
            cur.execute(query, {"channel": self._sync, "token": token, "jobs": job_ids, "created": created})
            rows = cur.fetchall()
        self.queries += 1
        self._clock(rows[0][0])
        self._contact = self.db_now
        read = {r[2]: (r[1], r[3], (r[4], r[5])) for r in rows if r[1] is not None}
        self._learn(conn, {job_id for _, job_id, _ in read.values()})
        self._barrier = _Barrier(token, read, rows[0][0], catch_up, time.monotonic() + TOKEN_WAIT)

    def _settled(self, conn: psycopg2.extensions.connection) -> None:
        """Wait for the pending read's token (after a reconnect, nothing is handed on before it)."""
        while self._barrier is not None:
            self._drain(conn)
            if self._barrier is None:
                break
            remaining = self._barrier.deadline - time.monotonic()
            if remaining <= 0:
                raise psycopg2.OperationalError("the reconciling read's own notification never came")
            self._wait(conn, remaining)

    def _settle(self, barrier: _Barrier) -> None:
        """The read against what was notified: a state no notification explains was written without one.

        Live, every notification is handed on as it comes, and each row keeps the states notified since its last
        read: a row with none whose state differs from the one handed on was written without a notification (a
        row notified meanwhile may have moved on after the read: the next read decides). After a reconnect
        (`catch_up`), the notifications before the token are held instead: every write after the new LISTEN was
        notified, so a state the read found that none of them has came before all of them, and is handed on
        first; a row whose read state is among them is moved by its first one, as a possible gap."""
        self._barrier = None
        held: dict[str, set[State]] = {}
        for note in barrier.held:
            if note.row_id is not None and note.state is not None:
                held.setdefault(note.row_id, set()).add(note.state)
        for row_id, (kind, job_id, state) in sorted(barrier.read.items(), key=lambda item: item[1][0] != "v"):
            job = self._jobs.get(job_id)
            if job is None:
                continue  # judged or outside the scope: not followed
            row = job.row(row_id, kind)
            notified = held.get(row_id, set()) if barrier.catch_up else row.since
            if state != row.state and (state not in notified if barrier.catch_up else not notified):
                self._emit(kind, row_id, job_id, state, "reconcile", barrier.at)
                self.reconciled += 1
                row.state, row.sure = state, True
            elif state == row.state and state not in held.get(row_id, ()):
                row.sure = True  # it had not moved when the read ran: every write after it is notified
            row.since.clear()
        for job_id in {job_id for _, job_id, _ in barrier.read.values()}:
            if job_id in self._jobs:
                self._jobs[job_id].whole = True  # every row of it was read: a row inserted later starts notified
        for note in barrier.held:
            self._take(note)

    # --- which jobs -----------------------------------------------------------------------

    def _learn(self, conn: psycopg2.extensions.connection, job_ids: Iterable[str]) -> None:
        """Read the facts of jobs seen for the first time; each gets a record (whole when it was created after this
        connection began listening: then every write of it comes as a notification)."""
        new = sorted(j for j in set(job_ids) if j not in self._jobs and not self.known(j))
        if not new:
            return
        facts = self._facts_on(conn, new)
        for job_id in new:
            found = facts.get(job_id)
            if found is None:
                continue
            self._facts[job_id] = found
            whole = found.first_at is not None and self._listen_at is not None and found.first_at >= self._listen_at
            self._jobs[job_id] = _Job(whole)

    def _prune(self) -> None:
        """Forget the records of jobs the loop does not follow (judged, or outside the scope)."""
        following = self.in_flight()
        for job_id, job in list(self._jobs.items()):
            if job.fresh:
                job.fresh = False
            elif job_id not in following:
                del self._jobs[job_id]

    def facts(self, job_ids: Iterable[str]) -> dict[str, JobFacts]:
        """Tenant, variants, creation time and whether ye-run seeded it, for each job (read while polling, or now)."""
        ids = sorted(set(job_ids))
        out = {j: self._facts.pop(j) for j in ids if j in self._facts}
        missing = [j for j in ids if j not in out]
        while missing:
            try:
                conn = self._conn or self._reopen(BACK)
                assert conn is not None
                out.update(self._facts_on(conn, missing))
                break
            except psycopg2.Error as exc:
                if not reconnect.lost(exc):
                    raise
                self._lost(exc)
        return out

    def _facts_on(self, conn: psycopg2.extensions.connection, ids: list[str]) -> dict[str, JobFacts]:
        rows, seeded = self._jobs_read(conn, _FACTS, ids)
        return {job_id: JobFacts(job_id, tenant, None, created_at, pairs(variants), job_id in seeded)
                for job_id, tenant, created_at, variants in rows}

    def _emit(self, kind: str, row_id: str, job_id: str, state: State, source: str,
              at: datetime | None = None) -> None:
        """A write as the judge takes it, stamped with the database's clock now, or `at` (never before the previous
        write's stamp)."""
        stamp = at or self.now()
        if self._stamp is not None and stamp < self._stamp:
            stamp = self._stamp
        self._stamp = stamp
        self._out.append(Write(next(self._serial), kind, row_id, job_id, state[0], state[1], None, stamp, source))

    # --- losing the connection ----------------------------------------------------------

    def _lost(self, exc: BaseException) -> None:
        super()._lost(exc)
        self._barrier = None
        if self._lost_at is None:
            self._lost_at = self._contact
        for job in self._jobs.values():
            job.whole = False
            for row in job.rows.values():
                row.sure = False
                row.since.clear()
        self._catch_up = True


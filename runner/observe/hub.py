"""One LISTEN connection for every observer in the process.

A suite of N scenarios would otherwise hold N LISTEN connections on a server shared with the
application. The hub holds one, on the pipeline's channels and on `ye_run_history` (where ye-run's
history triggers announce each record): its thread waits on the socket and hands each notification to
the observer that tracks the row it names, then lets each observer told read what it was told of,
at once, on the hub's thread: a scenario thread busy seeding would otherwise leave the reads (and
the observation lag) waiting. Observers run every read on the same connection, one at a time, under
the hub's lock. A notification that arrives while a read is on the wire is collected by the driver
into `notifies`, so the hub drains that list after every read as well as after every wake-up. Losing the connection is the hub's to mend (backoff,
keepalives, a heartbeat); each observer is told, and reads everything again once it is back.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from runner.db.connect import Database
from runner.db.reconnect import BROKEN, Backoff, Notified, Recorded, parse, parse_recorded
from runner.db.requirements import HISTORY_CHANNEL



class Listener(Protocol):
    """What the hub tells the observer of a row (observer.Observer is one)."""

    def notified(self, note: Notified) -> None: ...

    def recorded(self, record: Recorded) -> None:
        """A history record its trigger announced: on the hub's thread, holding its lock."""

    def delivered(self) -> float | None:
        """After notifications were handed over: on the hub's thread, holding its lock. Returns when (monotonic)
        to be asked again though nothing new came (a read put off to gather more), or None."""

    def lost(self, reason: str) -> None: ...

    def reconnected(self) -> None: ...

log = logging.getLogger("ye_run.observe")
T = TypeVar("T")


class Lost(Exception):
    """The hub has no connection right now; the observer reads again once it is back."""


class ListenHub:
    def __init__(self, database: Database, channels: tuple[str, str], heartbeat: float = 5.0,
                 name: str = "ye-run listen", max_backoff: float = 2.0):
        self.database = database
        self.channels = channels
        self.heartbeat = heartbeat
        self.name = name
        self._backoff = Backoff(0.05, max_backoff)
        self._conn: psycopg2.extensions.connection | None = None
        self._lock = threading.RLock()
        self._routes: dict[str, Listener] = {}
        self._observers: set[Listener] = set()
        self._told: set[Listener] = set()
        """Observers handed notifications they have not been asked to act on yet."""
        self._due: dict[Listener, float] = {}
        """Observers that put a read off, and until when."""
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._last_traffic = time.monotonic()
        self.reconnects = 0

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, conn: psycopg2.extensions.connection | None = None) -> None:
        """LISTEN before anything is seeded, on `conn` (an autocommit connection handed over, which the hub then
        owns) or a new one; a database that cannot be reached now is the caller's error."""
        self._conn = self._connect() if conn is None else self._listen_on(conn, rename=True)
        self._thread = threading.Thread(target=self._serve, name="ye-run-listen", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            _close(self._conn)
            self._conn = None
        if self._thread is None or not self._thread.is_alive():  # a thread still connecting keeps its pipe
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)

    @property
    def lock(self) -> threading.RLock:
        """The hub's lock: observers keep their rows under it too, so a read's cursors and what it found move
        together, whichever thread read."""
        return self._lock

    @property
    def connected(self) -> bool:
        return self._conn is not None

    @property
    def backend_pid(self) -> int | None:
        conn = self._conn
        return conn.get_backend_pid() if conn is not None else None

    def _connect(self) -> psycopg2.extensions.connection:
        return self._listen_on(self.database.connect(self.name, autocommit=True, keepalives=True))

    def _listen_on(self, conn: psycopg2.extensions.connection, rename: bool = False) -> psycopg2.extensions.connection:
        """The hub's settings and LISTENs on `conn`, in one message (a handed-over one is renamed for
        pg_stat_activity)."""
        statements = [sql.SQL("SET statement_timeout = '15s'")]
        if rename:
            statements.append(sql.SQL("SET application_name = {}").format(sql.Literal(self.name[:63])))
        statements += [sql.SQL("LISTEN {}").format(sql.Identifier(channel))
                       for channel in (*self.channels, HISTORY_CHANNEL)]
        with conn.cursor() as cur:
            cur.execute(sql.SQL("; ").join(statements))
        self._last_traffic = time.monotonic()
        return conn

    # --- who gets what ------------------------------------------------------------------

    def attach(self, observer: Listener) -> None:
        with self._lock:
            self._observers.add(observer)

    def detach(self, observer: Listener) -> None:
        with self._lock:
            self._observers.discard(observer)
            for row_id in [r for r, o in self._routes.items() if o is observer]:
                del self._routes[row_id]
            self._told.discard(observer)
            self._due.pop(observer, None)

    def route(self, row_ids: list[str], observer: Listener) -> None:
        with self._lock:
            for row_id in row_ids:
                self._routes[row_id] = observer

    def unroute(self, row_ids: list[str]) -> None:
        with self._lock:
            for row_id in row_ids:
                self._routes.pop(row_id, None)

    # --- reads --------------------------------------------------------------------------

    def query(self, read: Callable[[psycopg2.extensions.connection], T]) -> T:
        """Run `read` on the hub's connection, alone; raises Lost when there is none or it goes."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise Lost()
            try:
                result = read(conn)
                self._last_traffic = time.monotonic()
                self._deliver(conn)
                if self._told and threading.current_thread() is not self._thread:
                    os.write(self._wake_w, b"x")  # what came during another thread's read is acted on at once too
                return result
            except BROKEN as exc:
                self._lost(exc)
                raise Lost() from None

    # --- the thread ---------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                self._turn()
            except Exception as exc:  # the hub outlives anything one turn meets: every observer depends on it
                log.warning("observer: the LISTEN hub met %s; going on", exc)
                with self._lock:
                    if self._conn is not None:
                        self._lost(exc)
                self._stopping.wait(0.05)

    def _turn(self) -> None:
        """One wait on the socket, or one reconnect attempt."""
        conn = self._conn
        if conn is None:
            self._reconnect()
            return
        wait = min(self.heartbeat, 1.0)
        if self._due:
            wait = max(0.0, min(wait, min(self._due.values()) - time.monotonic()))
        try:
            ready = select.select([conn, self._wake_r], [], [], wait)[0]
        except (OSError, ValueError, psycopg2.Error) as exc:  # closed under us: lost, unless a read already said so
            with self._lock:
                if self._conn is conn:
                    self._lost(exc)
            return
        if self._wake_r in ready:
            os.read(self._wake_r, 64)
        with self._lock:
            if self._conn is not conn:
                return
            try:
                if conn in ready:
                    conn.poll()
                self._deliver(conn)
                self._tell()
                if self._conn is conn and time.monotonic() - self._last_traffic >= self.heartbeat:
                    with conn.cursor() as cur:
                        cur.execute("SELECT 1")
                    self._last_traffic = time.monotonic()
            except BROKEN as exc:
                self._lost(exc)

    def _tell(self) -> None:
        """Each observer handed notifications (or whose put-off read is due) acts on them; its reads may bring more
        (told again) until quiet."""
        now = time.monotonic()
        for observer in [o for o, at in self._due.items() if at <= now]:
            del self._due[observer]
            self._told.add(observer)
        while self._told and self._conn is not None:
            observer = self._told.pop()
            due = observer.delivered()
            if due is not None:
                self._due[observer] = due

    def _deliver(self, conn: psycopg2.extensions.connection) -> None:
        notes, conn.notifies[:] = list(conn.notifies), []
        if notes:
            self._last_traffic = time.monotonic()
        for note in notes:
            if note.channel == HISTORY_CHANNEL:
                record = parse_recorded(note.payload)
                observer = self._routes.get(record.row_id) if record is not None else None
                if observer is not None and record is not None:
                    observer.recorded(record)
                    self._told.add(observer)
                continue
            parsed = parse(note.payload, note.channel == self.channels[1])
            observer = self._routes.get(parsed.row_id) if parsed is not None else None
            if observer is not None and parsed is not None:
                observer.notified(parsed)
                self._told.add(observer)

    def _lost(self, exc: BaseException) -> None:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("observer: lost the LISTEN connection (%s); reconnecting", reason)
        _close(self._conn)
        self._conn = None
        for observer in list(self._observers):
            observer.lost(reason)

    def _reconnect(self) -> None:
        try:
            conn = self._connect()
        except Exception as exc:  # InfrastructureError or a driver error: keep trying, later
            wait = self._backoff.next()
            log.warning("observer: reconnect failed (%s); next try in %.1fs", exc, wait)
            self._stopping.wait(wait)
            return
        if self._stopping.is_set():  # closed while connecting: nobody will use it
            _close(conn)
            return
        with self._lock:
            self._conn = conn
            self.reconnects += 1
            for observer in list(self._observers):
                observer.reconnected()
        self._backoff.reset()
        log.warning("observer: reconnected; catching up")


def _close(conn: psycopg2.extensions.connection | None) -> None:
    if conn is not None:
        try:
            conn.close()
        except psycopg2.Error:
            pass

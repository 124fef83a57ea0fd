"""The run's own connection: seeding, the job rows, the registry, cleanup; held from start to verdict.

Its advisory lock (taken at registration, again after every reconnect) is what tells a cleaner the
run is alive, so the connection is closed last. After a lost connection the run waits for the
server within --reconnect-window (db.reconnect), then hands every holder (the seeder, the
simulator) the new one.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from typing import Protocol

import psycopg2
import psycopg2.extensions

from runner.db import failures, liveness, reconnect, registry
from runner.db.connect import Database, StatementCounter
from runner.durations import format_seconds
from runner.engine.events import Emitter, Note, ScenarioRef
from runner.errors import InfrastructureError, YeRunError


class RunRemoved(InfrastructureError):
    """A cleaner removed the run while it had no lock (reconnecting, with --force): it cannot go on."""


class Holder(Protocol):
    conn: psycopg2.extensions.connection


class RunConnection:
    def __init__(self, database: Database, statements: StatementCounter, record: registry.RunRecord,
                 emit: Emitter, ref: ScenarioRef):
        self.database = database
        self.statements = statements
        self.record = record
        self.emit = emit
        self.ref = ref
        self.conn: psycopg2.extensions.connection | None = None
        self.registered = False
        self.holders: list[Holder] = []
        """What holds the connection (the seeder, the simulator): handed the new one after a reconnect."""
        self.reconnects = 0
        self._next_heartbeat = math.inf

    def open(self) -> psycopg2.extensions.connection:
        self.conn = self.database.connect("ye-run", cursor_factory=self.statements.cursor_factory())
        return self.conn

    @property
    def writer(self) -> psycopg2.extensions.connection:
        assert self.conn is not None
        return self.conn

    def register(self, registered: bool, reconnect_window: float) -> None:
        """Take the run's locks (and, with a registry, register it): from here on no cleaner touches its rows."""
        self.registered = registered
        if registered:
            registry.start(self.writer, self.record, reconnect_window + 2 * liveness.HEARTBEAT)
            self._next_heartbeat = time.monotonic() + liveness.HEARTBEAT
        else:  # no registry: the locks alone keep `cleanup --tenant` and other runs' tenant cleanup off
            registry.claim(self.writer, self.record, registered=False)

    def heartbeat(self, now: float) -> None:
        """A sign of life in the registry, for cleaners on other hosts (they cannot see this process)."""
        if not self.registered or now < self._next_heartbeat:
            return
        self._next_heartbeat = now + liveness.HEARTBEAT
        try:
            registry.heartbeat(self.writer, self.record.run_id)
        except psycopg2.Error as exc:
            with contextlib.suppress(psycopg2.Error):
                self.writer.rollback()
            raise failures.describe(exc, "recording a sign of life") from None

    def reopen(self, connect_timeout: int | None) -> psycopg2.extensions.connection:
        """A new connection holding the run's lock again (a cleaner must still see the run alive)."""
        conn = self.database.connect("ye-run", cursor_factory=self.statements.cursor_factory(),
                                     **({"connect_timeout": connect_timeout} if connect_timeout else {}))
        try:
            ours = registry.claim(conn, self.record, registered=self.registered)
        except psycopg2.Error as exc:
            conn.close()
            raise failures.describe(exc, "taking the run's lock again") from None
        if not ours:  # not a lost connection: the run cannot go on, and says why
            conn.close()
            raise RunRemoved("while this run was reconnecting, a cleaner removed it (its registry entry is gone or "
                             "marked cleaned): its rows cannot be trusted; the run ends here")
        return conn

    def usable(self, connect_timeout: int | None) -> psycopg2.extensions.connection:
        """The connection, out of any transaction an error left open; reopened (lock and all) if lost."""
        if self.conn is not None:
            try:
                self.conn.rollback()
                return self.conn
            except psycopg2.Error:
                self.close()
        self.conn = self.reopen(connect_timeout)
        return self.conn

    def reconnect(self, why: YeRunError, window_seconds: float, stop: threading.Event) -> None:
        """The connection is gone: wait for the server, within the window, then hand every holder a new one. Past
        the window the run ends with the error (exit 3), its report written."""
        window = reconnect.Window(window_seconds, (stop,))
        notes = [0.0]

        def waiting(window: reconnect.Window, exc: Exception) -> None:
            if window.elapsed >= notes[0]:
                self.emit(Note(self.ref, f"database unreachable, retrying ({format_seconds(window.elapsed)} of "
                                         f"{format_seconds(window_seconds)}): {why}"))
                notes[0] = window.elapsed + 5.0

        waiting(window, why)
        try:
            conn = reconnect.retry(self.reopen, window, _unreachable, waiting)
        except InfrastructureError as exc:
            if not _unreachable(exc):
                raise
            raise InfrastructureError(f"the database was unreachable for {format_seconds(window.elapsed)} "
                                      f"(--reconnect-window {format_seconds(window_seconds)}): {exc}") from None
        self.close()
        self.conn = conn
        for holder in self.holders:
            holder.conn = conn
        self.reconnects += 1
        self.emit(Note(self.ref, f"reconnected after {format_seconds(window.elapsed)}; the run goes on"))

    def close(self) -> None:
        """Closing it releases the run's lock: cleaners may now see the run finished."""
        if self.conn is not None:
            with contextlib.suppress(psycopg2.Error):
                self.conn.close()
            self.conn = None


def _unreachable(exc: Exception) -> bool:
    """A failed attempt worth waiting out: the server could not be reached (not the run's own removal)."""
    return isinstance(exc, InfrastructureError) and not isinstance(exc, RunRemoved)

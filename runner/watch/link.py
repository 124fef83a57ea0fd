"""A watch source's connection, lost and made again: one behaviour for both sources.

Losing it is a note; the reconnect waits within `--reconnect-window` (for ever without one) and,
when it has waited a while, says once per reason what keeps failing (a dropped database, a
refused login), so a watch that waits for ever does not wait in silence.
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import datetime, timedelta

import psycopg2
import psycopg2.extensions

from runner.db import reconnect
from runner.db.connect import Database
from runner.errors import InfrastructureError

log = logging.getLogger("ye_run.watch")
FOREVER = 100 * 365 * 86400.0
"""The reconnect window of a watch that waits for ever (finite: `reconnect.Window.connect_timeout` rounds the time
left up to an int, and an infinite one raised OverflowError at the first reconnect)."""
SAY_AFTER = 30.0
"""Seconds of failed reconnects before the reason is said (a server restart is over sooner, and says nothing)."""
MAX_NOTES = 20
_SEEDED = ("SELECT DISTINCT row_key ->> 0 FROM ye_run_seeded WHERE table_name = 'jobs' "
           "AND row_key ->> 0 = ANY(%s::text[])")


def pairs(variants: list[str]) -> tuple[tuple[str, int], ...]:
    """A job's variants as the facts query lists them ('variant_id:creation_order') -> (id, order) pairs."""
    return tuple((item.rsplit(":", 1)[0], int(item.rsplit(":", 1)[1])) for item in variants)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "closed"


class Link:
    """A source's connection and what it counts; the subclass opens it (`_connect`)."""

    def __init__(self, database: Database, name: str, read_only: bool, channels: tuple[str, ...],
                 reconnect_window: float | None):
        self.database = database
        self.name = name
        self.read_only = read_only
        self.channels = channels
        self.reconnect_window = reconnect_window
        """Seconds a lost server is waited for before giving up; None: for ever (a watch that runs for days)."""
        self.db_now: datetime | None = None
        self.read_mono = 0.0
        self.queries = 0
        """Every statement the source sends (LISTENs included)."""
        self.reconnects = 0
        self.notes: list[str] = []
        self.seeded_readable = False
        self._conn: psycopg2.extensions.connection | None = None

    def _connect(self) -> psycopg2.extensions.connection:
        raise NotImplementedError

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg2.Error):
                conn.close()

    def now(self) -> datetime:
        """The database's clock, as of the last read plus the time since (the judge's timeouts run on it)."""
        assert self.db_now is not None
        return self.db_now + timedelta(seconds=time.monotonic() - self.read_mono)

    def _jobs_read(self, conn: psycopg2.extensions.connection, query: str,
                   ids: list[str]) -> tuple[list[tuple], set[str]]:  # type: ignore[type-arg]
        """`query`'s rows for the jobs `ids`, and which of them ye-run seeded (where its registry is readable)."""
        with conn.cursor() as cur:
            cur.execute(query, (ids,))
            rows = cur.fetchall()
            seeded: set[str] = set()
            if self.seeded_readable:
                cur.execute(_SEEDED, (ids,))
                seeded = {r[0] for r in cur.fetchall()}
        self.queries += 1 + self.seeded_readable
        return rows, seeded

    def _lost(self, exc: BaseException) -> None:
        self._note(f"lost the connection ({first_line(exc)}); reconnecting")
        self.close()

    def _reopen(self, back: str, stop: object = None) -> psycopg2.extensions.connection | None:
        """A new connection within the window, noting `back` once it is made; None when `stop` ended the wait."""
        window = reconnect.Window(self.reconnect_window if self.reconnect_window is not None else FOREVER,
                                  (stop,) if stop is not None else ())  # type: ignore[arg-type]
        said: set[str] = set()

        def waiting(window: reconnect.Window, exc: Exception) -> None:
            reason = first_line(exc)
            if window.elapsed >= SAY_AFTER and reason not in said:
                said.add(reason)
                limit = (f"until --reconnect-window {self.reconnect_window:g}s is over"
                         if self.reconnect_window is not None else "for ever: --reconnect-window sets a limit")
                self._note(f"still reconnecting after {window.elapsed:.0f}s: {reason} (trying {limit})")

        try:
            conn = reconnect.retry(lambda _timeout: self._connect(), window,
                                   lambda exc: isinstance(exc, InfrastructureError) or
                                   (isinstance(exc, psycopg2.Error) and reconnect.lost(exc)), waiting)
        except (InfrastructureError, psycopg2.Error):
            if window.stopped:
                return None
            raise
        self.reconnects += 1
        self._note(back)
        return conn

    def _note(self, text: str) -> None:
        log.warning("watch: %s", text)
        if len(self.notes) < MAX_NOTES:
            self.notes.append(text)

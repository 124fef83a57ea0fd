"""A watch waiting for ever for its database says what keeps failing, once per reason, then carries on."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid

import psycopg2.extensions
import pytest

from runner.db.connect import Database
from runner.watch import link


class _Source(link.Link):
    """A source reduced to its connection: the database it connects to may not exist yet."""

    def __init__(self, database: Database):
        super().__init__(database, "ye-run watch test", False, (), None)

    def _connect(self) -> psycopg2.extensions.connection:
        return self.database.connect(self.name)


def test_a_watch_reconnecting_for_ever_says_once_why_it_still_waits(db: Database, monkeypatch: pytest.MonkeyPatch):
    """Was: a watch whose database was dropped reconnected for ever without a word (only a --reconnect-window
    ended it, with the reason)."""
    monkeypatch.setattr(link, "SAY_AFTER", 0.0)
    admin = db.with_database("postgres")
    name = f"ye_run_gone_{uuid.uuid4().hex[:8]}"
    source = _Source(db.with_database(name))
    found: list[psycopg2.extensions.connection | None] = []
    waiter = threading.Thread(target=lambda: found.append(source._reopen("reconnected")), daemon=True)
    waiter.start()
    deadline = time.monotonic() + 30
    while not source.notes and time.monotonic() < deadline:
        time.sleep(0.01)
    with contextlib.closing(admin.connect("ye-run tests", autocommit=True)) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        waiter.join(30)
        assert found and found[0] is not None
        found[0].close()
        still, back = source.notes[0], source.notes[-1]
        assert still.startswith("still reconnecting after 0s: ") and f"database '{name}' does not exist" in still
        assert still.endswith("(trying for ever: --reconnect-window sets a limit)")
        assert back == "reconnected" and source.reconnects == 1
        assert sum(n.startswith("still reconnecting") for n in source.notes) == 1  # once per reason, not per try
    finally:
        with contextlib.closing(admin.connect("ye-run tests", autocommit=True)) as conn, conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')

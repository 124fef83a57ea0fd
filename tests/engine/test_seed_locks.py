"""Seeding that meets another session's lock (a migration's LOCK TABLE, a tenant row held FOR UPDATE) waits in
short tries: an interrupt ends the run within seconds, and nothing of the job is written; once the lock goes,
the job is seeded once."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from runner.db.connect import Database
from runner.engine.events import Event, Note
from tests.engine.helpers import Outcome, run

SCENARIO = "name: locked\n"


def _started(db: Database, tmp_path: Path, stop: threading.Event) -> tuple[threading.Thread, dict, threading.Event]:
    waiting, result = threading.Event(), {}

    def handler(event: Event) -> None:
        if isinstance(event, Note) and "waiting for it" in event.text:
            waiting.set()

    thread = threading.Thread(target=lambda: result.setdefault("outcome", run(db, tmp_path, SCENARIO, stop=stop,
                                                                               handlers=[handler])))
    thread.start()
    return thread, result, waiting


def test_an_interrupt_is_not_held_up_by_another_sessions_lock(db: Database, tmp_path: Path) -> None:
    stop = threading.Event()
    with contextlib.closing(db.connect("ye-run test lock holder")) as holder:
        with holder.cursor() as cur:
            cur.execute("LOCK TABLE jobs IN SHARE MODE")  # held until the rollback: every INSERT INTO jobs waits
        thread, result, waiting = _started(db, tmp_path, stop)
        assert waiting.wait(60), "the run never said it was waiting for the lock"
        stop.set()
        thread.join(60)
        stuck = thread.is_alive()
        holder.rollback()
    thread.join(60)
    assert not stuck, "the interrupted run waited for the other session's lock"
    outcome: Outcome = result["outcome"]
    assert outcome.result.outcome == "interrupted"
    assert len(outcome.result.jobs) == 0


def test_a_job_waits_for_a_lock_and_is_seeded_once_it_goes(db: Database, tmp_path: Path) -> None:
    with contextlib.closing(db.connect("ye-run test lock holder")) as holder:
        with holder.cursor() as cur:
            cur.execute("LOCK TABLE jobs IN SHARE MODE")
        thread, result, waiting = _started(db, tmp_path, threading.Event())
        assert waiting.wait(60)
        holder.rollback()
    thread.join(120)
    outcome: Outcome = result["outcome"]
    assert outcome.result.outcome == "passed", [f.message for f in outcome.result.all_failures]
    assert len(outcome.result.jobs) == 1

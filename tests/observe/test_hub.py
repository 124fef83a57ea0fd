"""The shared LISTEN connection: notifications reach the observer of their row, and the hub outlives its connection."""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from datetime import datetime, timezone

from runner.db.connect import Database
from runner.db.requirements import JOB_CHANNEL, VARIANT_CHANNEL
from runner.observe.hub import ListenHub
from runner.observe.observer import ObserveSettings, Observer
from runner.db.reconnect import Notified


class Recorder:
    """What the hub tells an observer, kept for the test to read."""

    def __init__(self) -> None:
        self.notes: list[Notified] = []
        self.losses: list[str] = []
        self.reconnects = 0
        self.turns: list[str] = []
        """The threads `delivered` was called on, one per batch of notifications handed over."""
        self.changed = threading.Condition()

    def notified(self, note: Notified) -> None:
        with self.changed:
            self.notes.append(note)
            self.changed.notify_all()

    def delivered(self) -> None:
        with self.changed:
            self.turns.append(threading.current_thread().name)
            self.changed.notify_all()

    def lost(self, reason: str) -> None:
        self.losses.append(reason)

    def reconnected(self) -> None:
        with self.changed:
            self.reconnects += 1
            self.changed.notify_all()

    def wait_for(self, condition, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
        with self.changed:
            return self.changed.wait_for(condition, timeout)


def _notify(db: Database, variant_id: str) -> None:
    payload = json.dumps({"job_variants_id": variant_id, "job_id": str(uuid.uuid4()), "current_step": "planner",
                          "status": "done"})
    with contextlib.closing(db.connect(autocommit=True)) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_notify(%s, %s)", (VARIANT_CHANNEL, payload))


def test_a_notification_reaches_the_observer_of_its_row_only(db: Database):
    hub = ListenHub(db, (VARIANT_CHANNEL, JOB_CHANNEL))
    mine, theirs = Recorder(), Recorder()
    hub.start()
    try:
        row = str(uuid.uuid4())
        hub.attach(mine)
        hub.attach(theirs)
        hub.route([row], mine)
        _notify(db, row)
        _notify(db, str(uuid.uuid4()))  # nobody's row
        assert mine.wait_for(lambda: len(mine.notes) == 1)
        assert mine.notes[0].row_id == row and mine.notes[0].step == "planner" and theirs.notes == []
        # then asked to act on it, on the hub's own thread (an observer reads there, not on a busy scenario thread)
        assert mine.wait_for(lambda: mine.turns) and mine.turns[0] == "ye-run-listen" and theirs.turns == []
    finally:
        hub.close()


def test_the_hub_outlives_its_connection_closed_under_it(db: Database):
    """Was: a read that found the connection lost closed it while the hub's thread was about to wait on it; the
    thread died of the InterfaceError, and every observer was without notifications for the rest of the run."""
    hub = ListenHub(db, (VARIANT_CHANNEL, JOB_CHANNEL), heartbeat=0.2)
    observer = Recorder()
    hub.start()
    try:
        hub.attach(observer)
        row = str(uuid.uuid4())
        hub.route([row], observer)
        assert hub._conn is not None
        hub._conn.close()  # what a racing read leaves behind: a closed connection still in place
        assert observer.wait_for(lambda: observer.reconnects >= 1), "the hub never reconnected"
        assert hub._thread is not None and hub._thread.is_alive()
        _notify(db, row)
        assert observer.wait_for(lambda: len(observer.notes) == 1)
        assert observer.losses
    finally:
        hub.close()


def test_the_hubs_thread_outlives_an_error_in_one_turn(db: Database):
    """A closed connection met by select() raised psycopg2's InterfaceError, which nothing caught: the thread died.
    Whatever one turn meets, the thread goes on, and the connection is made again."""
    hub = ListenHub(db, (VARIANT_CHANNEL, JOB_CHANNEL), heartbeat=0.2)
    observer = Recorder()
    real = hub._deliver
    failures = [RuntimeError("anything a turn did not foresee")]

    def deliver_once_failing(conn):  # type: ignore[no-untyped-def]
        if failures:
            raise failures.pop()
        real(conn)

    hub._deliver = deliver_once_failing  # type: ignore[method-assign]
    hub.start()
    try:
        hub.attach(observer)
        row = str(uuid.uuid4())
        hub.route([row], observer)
        assert observer.wait_for(lambda: observer.reconnects >= 1), "the hub never came back"
        _notify(db, row)
        assert observer.wait_for(lambda: len(observer.notes) == 1)
        assert hub._thread is not None and hub._thread.is_alive()
    finally:
        hub.close()


def test_a_read_without_a_connection_says_so_and_the_observer_is_not_caught_up(db: Database):
    """A job is judged only on a whole trace: with the connection gone, refresh answers None (it used to answer [],
    and the job was judged on what it had), and the observer is not caught up until it has read everything again."""
    hub = ListenHub(db, (VARIANT_CHANNEL, JOB_CHANNEL), heartbeat=0.2)
    hub.start()
    observer = Observer(db, ObserveSettings("listen"), hub=hub)
    observer.start()
    try:
        job, variant = str(uuid.uuid4()), str(uuid.uuid4())
        observer.track(job, [variant], ("user_img_input", "done"), datetime.now(timezone.utc), 0.0)
        assert observer.caught_up and observer.refresh(job) == []
        with hub._lock:
            hub._lost(RuntimeError("gone"))  # what a failed read does
        assert not observer.caught_up
        assert observer.refresh(job) is None
        recorder = Recorder()
        hub.attach(recorder)
        assert recorder.wait_for(lambda: recorder.reconnects >= 1)
        with hub._lock:  # every observer has heard of the reconnect (they are told under this lock)
            assert not observer.caught_up  # connected again, but the rows are still to be read again
        observer.poll(0.0)  # the catch-up read
        assert observer.caught_up and observer.refresh(job) == []
    finally:
        observer.close()
        hub.close()


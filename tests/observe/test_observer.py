"""One run's observer: listen mode keeps to the newest state it knows."""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from runner.db.connect import Database
from runner.observe.observer import ObserveSettings, Observer
from runner.db.reconnect import Notified
from tests.db.helpers import load, seeding


def test_a_notification_older_than_a_reconciling_read_is_not_applied(db: Database, tmp_path: Path):
    """Was: a notification sent before a state a reconciling read had already given was applied after it, and the
    checker saw the variant go backwards (false failures under load in listen mode)."""
    with contextlib.ExitStack() as stack:
        s = seeding(db, load(tmp_path, "name: s\nvariants: 1\n"), tmp_path, stack=stack)
        job = s.seeder.seed_job(1)
        variant = job.variants[0].id
        with s.conn.cursor() as cur:
            cur.execute("UPDATE jobs_variants SET current_step = 'planner', status = 'done', updated_at = now() "
                        "WHERE job_variants_id = %s", (variant,))
        s.conn.commit()
        observer = Observer(db, ObserveSettings("listen", reconcile=3600))
        observer.start()
        stack.callback(observer.close)
        now = datetime.now(timezone.utc)
        seen = observer.track(job.job_id, [variant], ("user_img_input", "done"), now, 0.0)
        assert ("planner", "done") in [t.state for t in seen if t.row_id == variant]  # the reconciling read
        observer.notified(Notified(variant, job.job_id, "v", "yolo_detect", "done", now - timedelta(hours=1)))
        later = observer.poll(0.0)
        assert [t.state for t in later if t.row_id == variant] == []
        observer.notified(Notified(variant, job.job_id, "v", "overlay", "running", now + timedelta(hours=1)))
        assert [t.state for t in observer.poll(0.0) if t.row_id == variant] == [("overlay", "running")]


def test_a_flapping_link_does_not_grow_the_report_without_end(db: Database):
    observer = Observer(db, ObserveSettings("history"))
    for _ in range(50):
        observer.lost("terminated")
        observer.reconnected()
    notes = observer.report.notes
    assert len(notes) == 10 and notes[0] == "lost the LISTEN connection (terminated)"
    assert notes[-1] == "... and 91 more note(s) like these (50 reconnect(s) in all)"


def test_history_mode_reads_a_notified_row_on_the_hubs_thread_while_the_scenario_thread_is_busy(db: Database,
                                                                                                 tmp_path: Path):
    """Was: the history read waited for the scenario's thread (seeding, judging), so at 2,000 transitions/s a
    transition was seen 20-40 ms after its commit against a bare LISTEN client's 2 ms (bench/scale.py)."""
    with contextlib.ExitStack() as stack:
        s = seeding(db, load(tmp_path, "name: s\nvariants: 1\n"), tmp_path, stack=stack)
        job = s.seeder.seed_job(1)
        variant = job.variants[0].id
        observer = Observer(db, ObserveSettings("history", reconcile=3600))
        observer.start()
        stack.callback(observer.close)
        observer.track(job.job_id, [variant], ("user_img_input", "done"), datetime.now(timezone.utc),
                       time.monotonic())
        observer.poll(0.0)  # the seeded rows, read by this thread
        queries = observer.report.queries
        with s.conn.cursor() as cur:
            cur.execute("UPDATE jobs_variants SET current_step = 'planner', status = 'running', updated_at = now() "
                        "WHERE job_variants_id = %s", (variant,))
        s.conn.commit()
        # This thread does not call the observer: the read is the hub's, as the notification arrives.
        deadline = time.monotonic() + 30
        while observer.report.queries == queries and time.monotonic() < deadline:
            time.sleep(0.005)
        taken = time.monotonic()
        seen = [t for t in observer.poll(0.0) if t.row_id == variant]
        assert [(t.state, t.source) for t in seen] == [(("planner", "running"), "history")]
        assert seen[0].seen_mono < taken  # seen when read, before this thread asked
        assert observer.report.queries == queries + 1

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


def _until(condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)


def _history_observer(db: Database, tmp_path: Path, stack: contextlib.ExitStack):  # type: ignore[no-untyped-def]
    s = seeding(db, load(tmp_path, "name: s\nvariants: 1\n"), tmp_path, stack=stack)
    job = s.seeder.seed_job(1)
    observer = Observer(db, ObserveSettings("history", reconcile=3600))
    observer.start()
    stack.callback(observer.close)
    observer.track(job.job_id, [job.variants[0].id], ("user_img_input", "done"), datetime.now(timezone.utc),
                   time.monotonic())
    observer.poll(0.0)  # the seeded rows, read by this thread
    return s, job, job.variants[0].id, observer


def test_history_mode_sees_an_announced_record_on_the_hubs_thread_without_a_query(db: Database, tmp_path: Path):
    """Was: each notification cost a history read, made when the scenario's thread (seeding, judging) was next
    free: at 2,000 transitions/s a transition was seen 20-40 ms after its commit against a bare LISTEN client's
    2 ms (bench/scale.py). The history trigger now announces the record itself."""
    with contextlib.ExitStack() as stack:
        s, job, variant, observer = _history_observer(db, tmp_path, stack)
        queries, notes = observer.report.queries, observer.report.notifications
        with s.conn.cursor() as cur:
            cur.execute("UPDATE jobs_variants SET current_step = 'planner', status = 'running', updated_at = now() "
                        "WHERE job_variants_id = %s", (variant,))
            cur.execute("SELECT max(id), max(changed_at) FROM ye_run_history WHERE row_id = %s", (variant,))
            record_id, changed_at = cur.fetchone()
        s.conn.commit()
        # This thread does not call the observer: the hub's thread takes the announcement as it arrives.
        _until(lambda: observer.report.notifications >= notes + 2)  # the pipeline's notification and the record's
        taken = time.monotonic()
        seen = [t for t in observer.poll(0.0) if t.row_id == variant]
        assert [(t.state, t.source, t.db_time) for t in seen] == [(("planner", "running"), "history", changed_at)]
        assert seen[0].seen_mono < taken  # seen as it arrived, before this thread asked
        assert observer.report.queries == queries  # no read: the announcement was the record
        assert observer.refresh(job.job_id) == []  # a read after it finds nothing more: the cursor moved on
        assert record_id is not None


def test_a_notification_no_record_answers_is_read_on_the_hubs_thread(db: Database, tmp_path: Path):
    """History triggers from an older ye-run announce nothing: the pipeline's notification makes the hub's thread
    read the row's history, as it arrives."""
    with contextlib.ExitStack() as stack:
        s, job, variant, observer = _history_observer(db, tmp_path, stack)
        queries = observer.report.queries
        with s.conn.cursor() as cur:  # what an older trigger left: a record, and only the pipeline's notification
            cur.execute("INSERT INTO ye_run_history (kind, row_id, job_id, current_step, status) "
                        "VALUES ('v', %s, %s, 'planner', 'done')", (variant, job.job_id))
            cur.execute("SELECT pg_notify('job_variant_state_changed', json_build_object('job_variants_id', "
                        "%s::text, 'job_id', %s::text, 'current_step', 'planner', 'status', 'done')::text)",
                        (variant, job.job_id))
        s.conn.commit()
        _until(lambda: observer.report.queries > queries)
        taken = time.monotonic()
        seen = [t for t in observer.poll(0.0) if t.row_id == variant]
        assert [(t.state, t.source) for t in seen] == [(("planner", "done"), "history")]
        assert seen[0].seen_mono < taken and observer.report.queries == queries + 1

"""Observation survives a killed LISTEN connection; listen mode says what it could have missed."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest

from runner.db.connect import Database
from runner.engine.events import TransitionObserved
from tests.engine.helpers import run
from tests.pipeline.rig import full_trace

SLOW = ("simulate_img_gen: true\nvariants: 3\ntimeouts: {step: 30s, stall: 30s, job: 60s}\n"
        "reference_pipeline: {latency: {default: 40ms}}\n")


class KillListenerMidRun:
    """When the first variant reaches planner, terminate the runner's LISTEN backend (as an operator would)."""

    def __init__(self, db: Database):
        self.db = db
        self.killed = 0

    def __call__(self, event) -> None:
        if self.killed or not isinstance(event, TransitionObserved) or event.transition.step != "planner":
            return
        with contextlib.closing(self.db.connect(autocommit=True)) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = 'ye-run listen' AND datname = current_database()")
            self.killed = cur.rowcount


@pytest.mark.parametrize("method", ["history", "listen"])
def test_killed_listen_connection_does_not_fail_the_run(db: Database, tmp_path: Path, method: str):
    killer = KillListenerMidRun(db)
    outcome = run(db, tmp_path, f"name: kill-{method}\n{SLOW}", handlers=[killer], observe=method)
    result = outcome.result
    assert killer.killed
    assert result.outcome == "passed", [f.text() for f in result.all_failures]
    assert result.observation.reconnects >= 1
    assert any("lost the LISTEN connection" in n for n in result.observation.notes)
    (job,) = result.jobs
    if method == "history":
        assert result.observation.complete
        for trace in job.variants.values():
            assert trace.states == full_trace()  # nothing missed across the reconnect
    else:
        assert not result.observation.complete
        assert "could have been missed" in result.observation.description
        assert all(trace.states[-1] == ("iou_eval", "done") for trace in job.variants.values())


def test_listen_mode_cannot_see_duplicate_writes(db: Database, tmp_path: Path):
    text = ("name: dup-listen\nsimulate_img_gen: true\n"
            "reference_pipeline: {faults: [{kind: duplicate, step: planner}]}\n")
    history = run(db, tmp_path, text, observe="history")
    listen = run(db, tmp_path, text, observe="listen")
    assert history.kinds() == {"duplicate_terminal"}
    assert listen.result.outcome == "passed"  # invisible to NOTIFY: the report says so
    assert "repeated writes of the same state are invisible" in listen.result.observation.description


def test_transitions_carry_both_clocks(db: Database, tmp_path: Path):
    outcome = run(db, tmp_path, "name: clocks\nsimulate_img_gen: true\n")
    for trace in outcome.result.jobs[0].variants.values():
        for t in trace.transitions:
            assert t.db_time is not None and t.seen_time is not None and t.source == "history"
            assert t.db_time <= t.seen_time or (t.db_time - t.seen_time).total_seconds() < 5
        times = [t.db_time for t in trace.transitions]
        assert times == sorted(times)


def test_no_job_is_judged_on_a_trace_missing_what_happened_while_the_connection_was_gone(db: Database,
                                                                                        tmp_path: Path):
    """The shared LISTEN connection is killed every 100 ms while 6 jobs run: each is judged only once its trace is
    whole again (was: a job whose refresh met a lost connection was judged on what it had, and passed with its
    job-level steps never observed)."""
    stop = threading.Event()

    def killer() -> None:
        with contextlib.closing(db.connect(autocommit=True)) as conn, conn.cursor() as cur:
            while not stop.wait(0.1):
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = 'ye-run listen' AND datname = current_database()")

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        outcome = run(db, tmp_path, "name: kills\nsimulate_img_gen: true\nmode: {type: interval, jobs: 6, "
                                    "interval: 100ms}\nreference_pipeline: {latency: {default: 10ms}}\n"
                                    "timeouts: {step: 60s, stall: 60s, job: 120s}\n", observe="history")
    finally:
        stop.set()
        thread.join()
    result = outcome.result
    assert result.outcome == "passed", [f.text() for f in result.all_failures]
    for job in result.jobs:
        for trace in job.variants.values():
            assert trace.states == full_trace()
        steps = [t.step for t in job.job_trace if t.status == "done"]
        assert steps[-2:] == ["ad_copy_gen_kor", "instagram_feed_gen"], steps

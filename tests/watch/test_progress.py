"""The jobs in flight per step while a watch runs: the console's progress line (at most every 10 s, when it
changed; on a terminal, or with --progress; never with -q) and the metrics' gauge, which count the same."""

from __future__ import annotations

import contextlib
import os
import pty
import subprocess
import sys
import time
import types
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from runner.cli.main import cli
from runner.definition import DEFAULT
from runner.watch.judge import WatchJudge
from runner.watch.progress import ProgressLine
from runner.watch.source import JobFacts, Write
from tests.conftest import new_tenant
from tests.watch.app import WAIT, App, Watching
from tests.watch.test_cli import url, walked
from tests.watch.test_metrics import by, metered, scrape_until
from tests.watch.test_reports import ROOT, skipping
from tests.watch.test_scripted import WALK


@pytest.fixture
def stack():
    with contextlib.ExitStack() as s:
        yield s


def test_each_job_in_flight_is_counted_at_the_step_that_holds_it_back(database_with, stack):
    database = database_with()
    app = App(database, new_tenant(), stack)
    watching = Watching(database, stack, settle=0.5)
    lines: list[str] = []
    watching.watch.turns.append(ProgressLine(lines.append, interval=0.0))  # attached before any job exists
    address = metered(watching.watch, stack)
    analyzing, planning, split = app.create_job(), app.create_job(), app.create_job()
    app.move(analyzing, WALK[:3])  # vlm_analyze running
    app.move(planning, WALK[:7])  # planner running
    app.move(split, WALK[:6])  # yolo_detect done ...
    app.move(split, WALK[6:7], variants=(1,))  # ... and variant #1 on to planner: held back at yolo_detect
    done, broken = walked(app), skipping(app)
    watching.until(watching.judged([done.job_id, broken.job_id]))
    expected = "in flight: 3 jobs — vlm_analyze 1, yolo_detect 1, planner 1; judged 2 (1 violated)"
    deadline = time.monotonic() + WAIT
    while expected not in lines:
        assert time.monotonic() < deadline, lines
        time.sleep(0.1)  # polling a condition the watch's thread makes true, with a deadline
    gauge = "ye_run_watch_jobs_in_flight"
    at_steps = {("vlm_analyze",): 1, ("yolo_detect",): 1, ("planner",): 1}
    scrape_until(address, lambda s: by(s, gauge, "step") == at_steps, f"the gauge at {at_steps}")  # refreshed each 1s


def test_a_line_is_printed_only_when_it_changed_and_at_most_every_interval():
    judge = WatchJudge(DEFAULT)
    watch = types.SimpleNamespace(judge=judge)
    now = [0.0]
    printed: list[str] = []
    progress = ProgressLine(printed.append, interval=10.0, clock=lambda: now[0])
    progress(watch)  # nothing seen yet: nothing to say
    assert printed == []
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    judge.follow(JobFacts("job-1", "t", 1, start, (("variant-1", 1), ("variant-2", 2))))
    progress(watch)
    assert printed == ["in flight: 1 job — user_img_input 1; judged 0"]

    def write(n: int, row: str, step: str, status: str) -> None:
        judge.apply([Write(n, "v", row, "job-1", step, status, None, start + timedelta(seconds=n))], n)

    write(2, "variant-1", "img_gen", "running")
    write(3, "variant-2", "img_gen", "running")
    now[0] = 5.0
    progress(watch)  # changed, but within 10 s of the last line
    assert len(printed) == 1
    now[0] = 10.0
    progress(watch)
    assert printed[-1] == "in flight: 1 job — img_gen 1; judged 0"
    now[0] = 30.0
    progress(watch)  # unchanged: silent
    assert len(printed) == 2


def run_once(database, *extra: str) -> str:
    result = CliRunner().invoke(cli, ["watch", "--database-url", url(database), "--once", "--since", "1h", *extra])
    assert result.exit_code == 1, result.output
    return result.output


def test_the_line_is_printed_on_a_terminal_or_with_progress_and_never_with_quiet(database_with, stack):
    database = database_with()
    app = App(database, new_tenant(), stack)
    walked(app), skipping(app)
    line = "in flight: 0 jobs; judged 2 (1 violated)"
    assert line not in run_once(database)  # CliRunner's stdout is not a terminal
    assert line in run_once(database, "--progress")
    assert line not in run_once(database, "--progress", "-q")

    def on_a_terminal(**env: str) -> str:
        leader, follower = pty.openpty()
        environ = {k: v for k, v in os.environ.items() if k != "CI"}
        proc = subprocess.Popen([sys.executable, "-m", "runner", "watch", "--database-url", url(database), "--once",
                                 "--since", "1h"], stdout=follower, stderr=subprocess.DEVNULL,
                                env={**environ, "PYTHONPATH": str(ROOT), **env})
        os.close(follower)
        out = b""
        with contextlib.suppress(OSError):  # EIO: the process closed the terminal
            while chunk := os.read(leader, 65536):
                out += chunk
        os.close(leader)
        assert proc.wait(WAIT) == 1
        return out.decode("utf-8", "replace")

    assert line in on_a_terminal()
    assert line not in on_a_terminal(CI="true")  # as `run` does: CI logs get no progress

"""The console on a terminal: live progress that fits the width, for several scenarios in flight."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import termios
from pathlib import Path

from runner.db.connect import Database
from tests.cli.test_run_cli import _process, _wait_for

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def visible_lines(output: str) -> list[str]:
    """What a terminal shows line by line: escape sequences dropped, split at newlines and carriage returns."""
    return [part for part in re.split(r"[\r\n]", ANSI.sub("", output)) if part]


def test_progress_fits_80_columns_with_many_jobs_in_flight(db: Database, tmp_path: Path):
    suite = tmp_path / "suite"
    suite.mkdir()
    for name in ("a-long-scenario-name-to-crop", "b-another-long-scenario-name"):
        (suite / f"{name}.yaml").write_text(
            f"name: {name}\ntenant: {{id: ye_console_test, isolate: true}}\nsimulate_img_gen: true\nvariants: 5\n"
            "mode: {type: interval, jobs: 4, interval: 50ms}\nreference_pipeline: {latency: {default: 60ms}}\n")
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = _process(db, "run", str(suite), "-j", "2", "--reference-pipeline", ci=False, stdout=follower,
                    stderr=follower)
    os.close(follower)
    try:
        output = _wait_for(leader, " not run in ", timeout=120)
    finally:
        proc.wait(timeout=60)
        os.close(leader)
    assert proc.returncode == 0, output
    lines = visible_lines(output)
    drawn = [line for line in lines if " job " in line and "[" in line]
    assert drawn, "no progress line was drawn"
    assert {"a-long-scenario-name-to-crop", "b-another-long-scenario-name"} <= {
        line.split()[0] for line in drawn}, "both scenarios in flight at once"
    assert max(len(line) for line in drawn) <= 80, max(drawn, key=len)
    assert lines[-1].startswith("2 scenarios: 2 passed, 0 failed, 0 errors, 0 not run in ")

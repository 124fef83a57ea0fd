"""`ye-run watch --junit/--json/--html`: written on every way out (--duration, SIGTERM, a lost database), with
the violation in each; what a report keeps of a watch that runs for days is bounded."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import xmlschema
from click.testing import CliRunner

from runner.cli.main import cli
from runner.db import schema
from runner.db.connect import Database, parse_url
from runner.definition import DEFAULT
from runner.outcomes import FailureKind
from runner.report import reportfile
from runner.trace import Failure
from runner.watch.judge import JobVerdict
from runner.watch.output import Totals
from runner.watch.reports import ReportPaths, Setup, WatchReport
from tests.conftest import new_tenant
from tests.private_server import PrivateServer
from tests.watch.app import WAIT, App
from tests.watch.test_cli import url, walked
from tests.watch.test_scripted import WALK

ROOT = Path(__file__).resolve().parents[2]
JUNIT_XSD = ROOT / "tests" / "report" / "JUnit.xsd"


@pytest.fixture
def stack():
    with contextlib.ExitStack() as s:
        yield s


def skipping(app: App):
    """A job that goes from vlm_analyze straight to planner: a skipped_step at yolo_detect."""
    job = app.create_job()
    app.move(job, WALK[:4] + [("planner", "running")])
    return job


def report_files(tmp_path: Path) -> tuple[list[str], dict[str, Path]]:
    files = {"junit": tmp_path / "watch.xml", "json": tmp_path / "watch.json", "html": tmp_path / "watch.html"}
    return [arg for kind, path in files.items() for arg in (f"--{kind}", str(path))], files


def check_reports(files: dict[str, Path], outcome: str, healthy: list[str], broken: str) -> dict:
    """The three files say the same: the broken job fails with its violation and diff, the healthy ones pass."""
    doc = reportfile.load(files["json"])  # schema-valid: `ye-run report` reads it back
    (scenario,) = doc["scenarios"]
    assert scenario["name"] == "watch" and scenario["outcome"] == outcome
    jobs = {j["job_id"]: j for j in scenario["jobs"]}
    assert set(jobs) == {*healthy, broken}
    assert all(jobs[j]["outcome"] == "passed" and jobs[j]["failures"] == [] for j in healthy)
    violations = jobs[broken]["failures"]  # one per variant when both were read at once (a backfill)
    assert {(v["kind"], v["step"]) for v in violations} == {(FailureKind.SKIPPED_STEP, "yolo_detect")}
    violation = violations[0]
    assert violation["creation_order"] == 1
    assert "- yolo_detect running" in violation["detail"] and "broke built-in: $.variant_steps[3]" in \
        violation["message"]
    assert scenario["latency"]["vlm_analyze"]["n"] >= 2 * (len(healthy) + 1)  # both variants of every job ran it

    tree = ET.parse(files["junit"])
    xmlschema.XMLSchema(str(JUNIT_XSD)).validate(tree)
    cases = {c.get("name"): c for c in tree.iter("testcase")}
    ordinal = jobs[broken]["ordinal"]
    assert violation["message"].startswith(f"watch › job {ordinal} ({broken})")  # numbered as the console says
    failure = cases[f"job {ordinal}"].find("failure")
    assert failure is not None and failure.get("type") == "skipped_step"
    assert "- yolo_detect running" in failure.text
    passed = [cases[f"job {jobs[j]['ordinal']}"] for j in healthy]
    assert all(c.find("failure") is None and c.find("error") is None for c in passed)
    suite = tree.getroot().find("testsuite")
    assert suite.get("failures") == "1"

    page = files["html"].read_text(encoding="utf-8")
    assert "skipped yolo_detect" in page and broken in page
    return doc


def test_after_duration_the_three_reports_hold_the_violation(database_with, stack, tmp_path):
    database = database_with()
    app = App(database, new_tenant(), stack)
    healthy = [walked(app).job_id for _ in range(2)]
    broken = skipping(app).job_id
    args, files = report_files(tmp_path)
    result = CliRunner().invoke(cli, ["watch", "--database-url", url(database), "--since", "1h", "--duration", "1s",
                                      *args])
    assert result.exit_code == 1, result.output
    doc = check_reports(files, "failed", healthy, broken)
    assert doc["exit_code"] == 1 and doc["error"] is None and doc["totals"]["failed"] == 1
    assert "watch: 3 job(s) judged: 2 completed" in "\n".join(doc["scenarios"][0]["summary"])


class Process:
    """`ye-run watch` as a real process; its output lines collected as they come (a condition waits on them)."""

    def __init__(self, args: list[str], stack: contextlib.ExitStack):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        env.pop("CI", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "runner", "watch", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        stack.callback(self._kill)
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(stream, name), daemon=True)
                         for stream, name in ((self.proc.stdout, "out"), (self.proc.stderr, "err"))]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, name: str) -> None:
        for line in stream:
            (self.out if name == "out" else self.err).append(line.rstrip("\n"))
            self.lines.put((name, line))

    def _kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.proc.poll() is None or not self.lines.empty(), \
                f"ye-run watch exited ({self.proc.returncode}) before {what}: {self.err}"
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"not reached in time: {what}; stderr so far: {self.err}"
            with contextlib.suppress(queue.Empty):
                self.lines.get(timeout=min(remaining, 0.5))

    def finish(self, timeout: float = WAIT) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return code


def judged_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_after_sigterm_the_reports_are_written_and_the_progress_line_was_printed(database_with, stack, tmp_path):
    database = database_with()
    app = App(database, new_tenant(), stack)
    healthy = [walked(app).job_id for _ in range(2)]
    broken = skipping(app).job_id
    args, files = report_files(tmp_path)
    jsonl = tmp_path / "judged.jsonl"
    watch = Process(["--database-url", url(database), "--since", "1h", "--jsonl", str(jsonl), "--progress", *args],
                    stack)
    watch.wait_for(lambda: judged_lines(jsonl) == 3, "the three jobs are judged")
    assert not files["json"].exists()  # written on the way out, not before
    watch.proc.send_signal(signal.SIGTERM)
    assert watch.finish() == 1, watch.err
    check_reports(files, "failed", healthy, broken)
    assert "in flight: 0 jobs; judged 3 (1 violated)" in watch.out, watch.out  # stdout is a pipe: --progress


def test_a_watch_ended_by_a_lost_database_writes_an_error_report(stack, tmp_path):
    server = PrivateServer.named()
    stack.callback(server.stop)
    database = Database(parse_url(server.join()))
    with contextlib.closing(database.connect("ye-run tests")) as conn:
        schema.install(conn)
    app = App(database, new_tenant(), stack)
    healthy = [walked(app).job_id]
    broken = skipping(app).job_id
    app.conn.close()
    args, files = report_files(tmp_path)
    jsonl = tmp_path / "judged.jsonl"
    watch = Process(["--database-url", url(database), "--since", "1h", "--jsonl", str(jsonl),
                     "--reconnect-window", "2s", *args], stack)
    watch.wait_for(lambda: judged_lines(jsonl) == 2, "the two jobs are judged")
    server.stop()
    assert watch.finish() == 3, watch.err
    doc = check_reports(files, "error", healthy, broken)
    assert doc["exit_code"] == 3 and doc["totals"]["errors"] == 1
    assert doc["error"].startswith("the watch ended on an error: ") and doc["scenarios"][0]["error"] == doc["error"]
    checks = next(c for c in ET.parse(files["junit"]).iter("testcase") if c.get("name") == "scenario checks")
    assert checks.find("error") is not None
    assert "ERROR" in files["html"].read_text(encoding="utf-8")


def verdict(n: int, outcome: str) -> JobVerdict:
    start = datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=n)
    violations = [Failure(FailureKind.SKIPPED_STEP, f"watch › job {n}: skipped yolo_detect", "diff", n, f"job-{n}",
                          1, "v", "yolo_detect")] if outcome == "violated" else []
    return JobVerdict(f"job-{n}", "t", False, outcome, violations, 2, start, start + timedelta(seconds=3),
                      ("instagram_feed_gen", "done") if outcome == "completed" else ("ocr_eval", "failed"),
                      broke=["built-in: $.variant_steps[3]"] * len(violations))


def test_a_report_keeps_the_first_violations_and_the_latest_others_and_counts_the_rest(tmp_path):
    report = WatchReport(Setup("db", DEFAULT, "from now on"), listed=2)
    outcomes = ["violated", "completed", "failed"] * 4
    for n, outcome in enumerate(outcomes, 1):
        report.verdict(verdict(n, outcome))
    assert len(report.violated) == 2 and len(report.completed) == 2 and len(report.failed) == 2  # bounded
    totals = Totals(outcomes={"violated": 4, "completed": 4, "failed": 4}, kinds={"skipped_step": 4})
    doc = report.document(totals)
    (scenario,) = doc["scenarios"]
    listed = {j["job_id"]: j for j in scenario["jobs"]}
    assert set(listed) == {"job-1", "job-4", "job-8", "job-11", "job-9", "job-12"}
    assert [j["ordinal"] for j in scenario["jobs"]] == [1, 4, 8, 9, 11, 12]
    assert "6 of 12 judged job(s) listed" in scenario["note"]
    failed = listed["job-12"]
    assert failed["outcome"] == "passed" and failed["failures"] == []
    assert [d["kind"] for d in failed["detected"]] == ["unexpected_failure"]
    assert "job 12 (job-12): failed within the contract, the job row at (ocr_eval, failed)" in \
        "\n".join(scenario["summary"])
    paths = ReportPaths(json=tmp_path / "r.json", junit=tmp_path / "r.xml", html=tmp_path / "r.html")
    report.save(paths, totals)
    assert reportfile.load(paths.json)["scenarios"][0]["jobs"] == json.loads(json.dumps(scenario["jobs"]))


def test_a_job_judged_again_after_its_end_is_listed_once_as_violated():
    import dataclasses

    report = WatchReport(Setup("db", DEFAULT, "from now on"))
    report.verdict(verdict(1, "completed"))
    report.verdict(verdict(2, "completed"))
    again = dataclasses.replace(verdict(1, "violated"), after_end="completed")
    report.verdict(again)
    assert report.seen == {"completed": 1, "failed": 0, "violated": 1}
    assert [v.job_id for _, v in report.completed] == ["job-2"]
    assert report.violated == [(1, again)]  # under its first ordinal

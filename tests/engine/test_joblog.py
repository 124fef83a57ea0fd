"""A long run's judged jobs go to disk and come back whole; what the verdict and the summary need never does."""

from __future__ import annotations

import tempfile
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from runner.db.registry import SeededJob, SeededVariant
from runner.engine.joblog import JobLog
from runner.engine.results import JobResult
from runner.trace import Failure, Transition, VariantTrace

T0 = datetime(2026, 11, 29, tzinfo=timezone.utc)


def job(ordinal: int, outcome: str = "passed", failures: int = 0, retries: int = 0) -> JobResult:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    job_id = str(uuid.uuid4())
    seeded = SeededJob(ordinal, job_id, "ye_t_test", str(uuid.uuid4()),
                       tuple(SeededVariant(v, i + 1) for i, v in enumerate(ids)), (("jobs", (job_id,)),))
    traces = {v: VariantTrace(v, i + 1, [Transition(v, job_id, "v", step, "done", T0 + timedelta(seconds=n),
                                                    T0 + timedelta(seconds=n, microseconds=5), float(n), 0)
                                         for n, step in enumerate(("img_gen", "planner", "overlay"))])
              for i, v in enumerate(ids)}
    result = JobResult(seeded, T0, 0.0, traces, outcome=outcome)
    result.failures = [Failure("unexpected_failure", f"job {ordinal} failure {n}", job_ordinal=ordinal,
                               job_id=job_id) for n in range(failures)]
    result.retries = {1: {"overlay": retries}} if retries else {}
    return result


def filled(n: int, keep: int, **kwargs) -> tuple[JobLog, list[JobResult]]:  # type: ignore[no-untyped-def]
    log, jobs = JobLog(keep=keep), [job(i + 1, **kwargs) for i in range(n)]
    for j in jobs:
        log.append(j)
        log.judged(j)
    return log, jobs


def test_judged_jobs_beyond_keep_go_to_disk_and_come_back_equal_and_in_order():
    log, jobs = filled(50, keep=5)
    assert log.spilled == 45 and len(log.in_memory()) == 5
    back = list(log)
    assert back == jobs and all(a is not b for a, b in zip(back[:45], jobs[:45]))
    assert log[0] == jobs[0] and log[-1] is jobs[-1] and log[10:13] == jobs[10:13]
    with pytest.raises(IndexError):
        log[50]
    (first, *_), total = log, len(log)  # unpacking, as the tests and the pytest fixture do
    assert first == jobs[0] and total == 50


def test_unjudged_jobs_stay_in_memory_however_many_are_judged():
    log = JobLog(keep=0)
    running, judged = job(1, outcome="running"), job(2)
    log.append(running)
    log.append(judged)
    log.judged(judged)
    assert log.in_memory() == [running] and log.in_memory()[0] is running and log.spilled == 1


def test_the_verdict_and_the_summary_never_read_the_disk():
    log, jobs = filled(20, keep=2, outcome="failed", failures=2, retries=1)
    assert [f.message for f in log.failures()] == [f.message for j in jobs for f in j.failures]
    assert log._file is not None
    log._file.close()  # the disk is gone: anything that still reads it would raise
    assert log.has_failures()
    tally = log.tally()
    assert tally.outcomes == {"failed": 20} and tally.variants == 60 and tally.retries == {"overlay": 20}


def test_small_runs_never_touch_the_disk():
    log, _ = filled(64, keep=64)
    assert log.spilled == 0 and log._file is None


def test_when_the_disk_refuses_the_jobs_stay_in_memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    log, jobs = filled(10, keep=1)
    assert log.spilled == 0 and list(log) == jobs


def test_a_list_given_to_a_result_becomes_a_job_log():
    from runner.engine.results import ScenarioResult

    result = ScenarioResult("s", "s.yaml", "r", jobs=[job(1), job(2, outcome="failed", failures=1)])
    assert isinstance(result.jobs, JobLog) and len(result.jobs) == 2
    assert [f.message for f in result.all_failures] == ["job 2 failure 0"]


def test_a_disk_that_fills_mid_write_leaves_every_job_whole(tmp_path: Path):
    """A real short write: the file size limit (RLIMIT_FSIZE) lets the kernel write part of a job and say so only
    by the count. The run then keeps jobs in memory; nothing read back is truncated."""
    script = tmp_path / "fill.py"
    script.write_text(
        "import resource, signal, sys, tempfile\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n"
        "from tests.engine.test_joblog import filled\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))\n"
        "log, jobs = filled(40, keep=2)\n"
        "assert 0 < log.spilled < 38, log.spilled  # some went to disk before it filled, the rest stayed\n"
        "assert list(log) == jobs and log._disk_failed\n"
        "print('ok', log.spilled)\n")
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok ")


def test_only_the_failing_spilled_jobs_are_read_back_for_their_failures():
    log, jobs = filled(30, keep=2)
    failing = job(31, outcome="failed", failures=3)
    log.append(failing)
    log.judged(failing)
    for j in [job(32 + i) for i in range(5)]:
        log.append(j)
        log.judged(j)
    assert log.has_failures() and len(log._failing) == 1  # the failures' text stays on disk
    assert [f.message for f in log.failures()] == [f.message for f in failing.failures]
    clean, _ = filled(30, keep=2)
    assert not clean.has_failures() and clean.failures() == []



def test_a_spilled_failure_comes_back_with_its_kind_and_origin():
    from runner.outcomes import FailureKind
    from runner.scenario.model import Origin

    jobs = [job(i + 1) for i in range(3)]
    placed = Failure("retry_limit", "too many", job_ordinal=1, job_id=jobs[0].job_id,
                     origin=Origin("smoke.yaml", 12, 5), expectation="$.expect.retries.overlay")
    jobs[0].failures = [placed]
    log = JobLog(keep=0)
    for j in jobs:
        log.append(j)
        log.judged(j)
    assert log.spilled == 3
    back = log[0].failures[0]
    assert back == placed and back is not placed
    assert type(back.kind) is FailureKind and back.origin == Origin("smoke.yaml", 12, 5)

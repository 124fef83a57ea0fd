"""`ye-run pipeline` as a real process: a crash exits 70, a restarted worker finishes, Ctrl+C summarises."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runner.db.connect import Database
from tests.pipeline.rig import DONE, Rig, full_trace

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack():
    with contextlib.ExitStack() as s:
        yield s


def ye_run(*args: str, database: Database) -> subprocess.Popen:
    env = {**os.environ, "YE_DATABASE_URL": database.url.render_as_string(hide_password=False),
           "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "runner.cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_crash_exits_70_and_a_restarted_worker_finishes(db: Database, tmp_path: Path, stack):
    rig = Rig(db, tmp_path, stack, variants=1)
    config = tmp_path / "crash.yaml"
    config.write_text("faults:\n  - {kind: crash, step: planner}\nsweep: 200ms\n")
    tenant = rig.seeding.record.tenant_id
    first = ye_run("pipeline", "--config", str(config), "--tenant", tenant, database=db)
    stack.callback(first.kill)
    rig.img_gen()
    _, err = first.communicate(timeout=60)
    assert first.returncode == 70, err
    assert "crashed (injected fault): in planner of variant #1" in err
    assert rig.traces()[1] == full_trace(until="planner")[:-1]

    second = ye_run("pipeline", "--config", str(config), "--tenant", tenant, database=db)
    stack.callback(second.kill)
    rig.job_reaches(DONE)
    second.send_signal(signal.SIGINT)
    _, err = second.communicate(timeout=30)
    assert second.returncode == 0, err
    assert "resuming planner of variant #1 (left running)" in err
    assert "variants: 1 completed, 0 failed, 0 in flight" in err
    assert f"job={rig.jobs[0].job_id[:8]} variant=#1 step=iou_eval status=done" in err
    assert "planner" in err.split("variants:")[1]  # per-step summary lines


def test_default_scope_is_test_tenants_and_all_tenants_needs_force(db: Database):
    refused = ye_run("pipeline", "--all-tenants", database=db)
    _, err = refused.communicate(timeout=30)
    assert refused.returncode == 2 and "--force" in err
    guarded = ye_run("pipeline", "--tenant", "customer_acme", database=db)
    _, err = guarded.communicate(timeout=30)
    assert guarded.returncode == 2 and "does not look like test data" in err

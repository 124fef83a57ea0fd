"""The embedded default: reused across runs, initialised once under a lock, ephemeral on request."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from runner.db import embedded

ROOT = Path(__file__).resolve().parents[2]


def test_data_directory_is_reused(tmp_path: Path):
    data = tmp_path / "pg"
    with embedded.server(data_dir=data) as database, contextlib.closing(database.connect()) as conn:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE reuse_marker (x int); INSERT INTO reuse_marker VALUES (42)")
        conn.commit()
    assert (data / "PG_VERSION").is_file()
    with embedded.server(data_dir=data) as database, contextlib.closing(database.connect()) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT x FROM reuse_marker")
            assert cur.fetchone() == (42,)


def test_two_processes_starting_a_new_data_directory_at_once(tmp_path: Path):
    data = tmp_path / "shared" / "pg"
    script = ("import contextlib, sys\nfrom runner.db import embedded, catalog\n"
              f"with embedded.server(data_dir=__import__('pathlib').Path({str(data)!r})) as db:\n"
              "    with contextlib.closing(db.connect()) as c:\n"
              "        assert catalog.read(c).has('jobs_variants')\n"
              "print('ok')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert all(out.strip() == "ok" for out, _ in outputs)


def test_ephemeral_server_leaves_nothing_behind():
    with embedded.server(ephemeral=True) as database:
        pgdata = Path(database.url.query["host"])
        assert (pgdata / "PG_VERSION").is_file()
    assert not pgdata.exists() and not pgdata.parent.exists()


def test_default_data_dir_honours_the_environment(monkeypatch, tmp_path: Path):
    monkeypatch.setenv(embedded.ENV_DATA_DIR, str(tmp_path / "elsewhere"))
    assert embedded.default_data_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv(embedded.ENV_DATA_DIR)
    assert embedded.default_data_dir().parts[-2:] == ("ye-run", "pg")


def test_a_server_left_by_a_killed_run_is_adopted_and_stopped(tmp_path: Path):
    """SIGKILL leaves the embedded server running with no owner: the next run takes it over and stops it."""
    import signal

    data = tmp_path / "pg"
    script = ("import sys, time\nfrom pathlib import Path\nfrom runner.db import embedded\n"
              f"with embedded.server(data_dir=Path({str(data)!r})):\n"
              "    print('up', flush=True)\n    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().strip() == "up"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert (data / "postmaster.pid").is_file()  # the orphan: still running
    with embedded.server(data_dir=data) as database, contextlib.closing(database.connect()) as conn:
        assert conn.server_version > 0
    assert not (data / "postmaster.pid").exists()  # adopted, then stopped by its last user

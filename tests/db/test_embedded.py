"""The embedded default: reused across runs, initialised once under a lock, ephemeral on request."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

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


def test_a_user_who_is_not_root_runs_the_smoke_scenario_on_the_embedded_default():
    """The README's first command, as a throwaway unprivileged user with nothing but its own cache directory."""
    if os.geteuid() != 0 or not (shutil.which("useradd") and shutil.which("runuser")):
        pytest.skip("needs root with useradd and runuser to create a throwaway user")
    user = f"yerun_{secrets.token_hex(4)}"
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", user], check=True, capture_output=True)
    home = Path(tempfile.mkdtemp(prefix="ye-run-nonroot-"))
    try:
        uid = pwd.getpwnam(user).pw_uid
        os.chown(home, uid, -1)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "XDG_CACHE_HOME": str(home / "cache"),
               "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run(["runuser", "-u", user, "--", *_ye_run_for(user), "run", "scenarios/smoke.yaml"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "smoke: PASSED" in done.stdout
        pgdata = home / "cache" / "ye-run" / "pg"
        assert (pgdata / "PG_VERSION").is_file() and pgdata.stat().st_uid == uid
        listed = subprocess.run(["ps", "-u", user, "-o", "stat=,pid=,args="], capture_output=True, text=True).stdout
        left = [line for line in listed.splitlines() if not line.lstrip().startswith("Z")]  # zombies have exited
        assert not left, f"the server outlived the run: {left}"
    finally:
        subprocess.run(["pkill", "-KILL", "-u", user], capture_output=True)
        subprocess.run(["userdel", user], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def _ye_run_for(user: str) -> list[str]:
    """A command the throwaway user may run that is this ye-run: this interpreter, or, where that lives under a
    private directory (a pyenv in root's 0700 home), a system Python of the same version loading this
    environment's packages (same ABI; `addsitedir` so the editable install's finder is loaded too)."""
    def runs(python: str) -> bool:
        return subprocess.run(["runuser", "-u", user, "--", python, "-c", "import sys"], capture_output=True).returncode == 0

    if runs(sys.executable):
        return [sys.executable, "-m", "runner"]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        if os.access(candidate, os.X_OK) and runs(candidate):
            import site

            boot = (f"import runpy, site\nfor d in {site.getsitepackages()!r}: site.addsitedir(d)\n"
                    "runpy.run_module('runner', run_name='__main__', alter_sys=True)")
            return [candidate, "-c", boot]
    pytest.skip(f"{sys.executable} is not executable by an unprivileged user (a private directory on its path) "
                f"and no system {version} is")


def _postmaster_running(data: Path) -> bool:
    pid_file = data / "postmaster.pid"
    if not pid_file.is_file():
        return False
    with contextlib.suppress(ProcessLookupError, ValueError):
        os.kill(int(pid_file.read_text().split()[0]), 0)
        return True
    return False


def test_a_server_started_early_is_the_one_the_run_uses_and_stopped_when_it_leaves(tmp_path: Path):
    data = tmp_path / "pg"
    embedded.start_early(data)
    embedded.start_early(data)  # asked twice: one start
    future = embedded._EARLY[data]
    with embedded.server(data_dir=data) as database, contextlib.closing(database.connect()) as conn:
        assert future.done() and future.exception() is None
        handle, early = future.result()
        assert database == early  # claimed, not started a second time
        assert data not in embedded._EARLY
        with conn.cursor() as cur:
            cur.execute("SELECT pg_postmaster_start_time() IS NOT NULL")
            assert cur.fetchone() == (True,)
    assert not _postmaster_running(data)  # its last user stopped it


def test_a_server_started_early_and_never_claimed_is_stopped_at_exit(tmp_path: Path):
    """A command that ends before it needs the server (bad input, every file invalid) leaves nothing running."""
    data = tmp_path / "pg"
    script = (f"from pathlib import Path\nfrom runner.db import embedded\n"
              f"embedded.start_early(Path({str(data)!r}))\nraise SystemExit(2)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stderr
    assert (data / "PG_VERSION").is_file()  # it did start (the exit waited for it)
    assert not _postmaster_running(data)


def test_a_failed_early_start_is_reported_by_the_server_that_claims_it(tmp_path: Path):
    data = tmp_path / "not-a-dir"
    data.write_text("a file where the data directory should be")
    embedded.start_early(data)
    with pytest.raises(Exception) as raised:
        with embedded.server(data_dir=data):
            pass
    assert str(data) in str(raised.value)  # the server()'s own error, naming the directory
    assert data not in embedded._EARLY


def test_the_last_user_stops_the_server_and_a_second_user_keeps_it(tmp_path: Path):
    data = tmp_path / "pg"
    with embedded.server(data_dir=data):
        script = ("import sys\nfrom pathlib import Path\nfrom runner.db import embedded\n"
                  f"with embedded.server(data_dir=Path({str(data)!r})):\n    pass\n")
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr
        assert _postmaster_running(data)  # the other process left; this one still uses it
    assert not _postmaster_running(data)


def test_a_server_that_cannot_start_is_one_clear_error_with_its_log(tmp_path: Path):
    """The start is watched on postmaster.pid (not pg_ctl -w): a postmaster that dies while starting is reported
    at once, with the server log's reason, not waited for."""
    from runner.errors import InfrastructureError

    data = tmp_path / "pg"
    with embedded.server(data_dir=data):
        pass
    with open(data / "postgresql.auto.conf", "a") as conf:
        conf.write("\nshared_buffers = 'plenty'\n")
    with pytest.raises(InfrastructureError) as raised:
        with embedded.server(data_dir=data):
            pass
    assert str(data) in str(raised.value) and "shared_buffers" in str(raised.value)
    assert not _postmaster_running(data)


def test_an_interrupt_while_the_command_waits_for_an_unclaimed_start_still_stops_the_server(tmp_path: Path):
    """A second Ctrl+C cut the wait for a background start short, and the server came up with no owner; the exit
    hook now finishes the wait (signals ignored) and stops it."""
    data = tmp_path / "pg"
    script = (f"from pathlib import Path\nfrom runner.db import embedded\n"
              f"data = Path({str(data)!r})\nembedded.start_early(data)\nfuture = embedded._EARLY[data]\n"
              "real, calls = future.exception, []\n"
              "def interrupted(timeout=None):\n"
              "    if not calls:\n        calls.append(1)\n        raise KeyboardInterrupt\n"
              "    return real(timeout)\n"
              "future.exception = interrupted\n"
              "try:\n    embedded.forget_early()\nexcept KeyboardInterrupt:\n    pass\n"
              "assert data in embedded._EARLY\nraise SystemExit(130)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 130, done.stderr
    assert (data / "PG_VERSION").is_file()
    assert not _postmaster_running(data)


def test_a_bad_setting_is_one_line_from_the_server_log_and_no_second_try(tmp_path: Path, capfd):
    data = tmp_path / "pg"
    with embedded.server(data_dir=data):
        pass
    with open(data / "postgresql.auto.conf", "a") as conf:
        conf.write("\nfsync = = garbage\n")
    embedded.start_early(data)
    from runner.errors import InfrastructureError

    with pytest.raises(InfrastructureError) as raised:
        with embedded.server(data_dir=data):
            pass
    message = str(raised.value)
    assert "postgresql.auto.conf" in message and "syntax error" in message
    assert message.count("FATAL") == 1  # one start, not a second try
    assert "Showing contents of postgres server log" not in capfd.readouterr().err

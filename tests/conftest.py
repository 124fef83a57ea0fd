"""Real PostgreSQL for the tests: the embedded server, and an external one.

The external server is `YE_TEST_DATABASE_URL`'s (e.g. postgresql://postgres@127.0.0.1:5432/postgres)
when it is set, else a private server the run starts for itself (`tests.private_server`; one for all
pytest-xdist workers), so a fresh machine runs every test. Either way a fresh database is created
there for the session and dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runner.db import embedded, schema
from runner.db.connect import Database, parse_url
from tests.private_server import PrivateServer

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["pytester"]
PRIVATE = pytest.StashKey[tuple[PrivateServer, bool]]()
"""The run's private server, and whether this process named it (and so stops it at the end)."""
WORKER_KEY = "ye_run_private_server"


def pytest_configure(config: pytest.Config) -> None:
    shared = getattr(config, "workerinput", {}).get(WORKER_KEY)
    config.stash[PRIVATE] = (PrivateServer(Path(shared)), False) if shared else (PrivateServer.named(), True)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # type: ignore[no-untyped-def]
    """pytest-xdist: every worker joins the controller's private server instead of starting one."""
    node.workerinput[WORKER_KEY] = str(node.config.stash[PRIVATE][0].directory)


def pytest_unconfigure(config: pytest.Config) -> None:
    server, named_here = config.stash[PRIVATE]
    if named_here:  # under xdist the controller: every worker has finished
        server.stop()


def _drop(admin: Database, name: str) -> None:
    with contextlib.closing(admin.connect("ye-run tests", autocommit=True)) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                    "pg_backend_pid()", (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')


def _create(admin: Database, name: str) -> Database:
    with contextlib.closing(admin.connect("ye-run tests", autocommit=True)) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    return admin.with_database(name)


@contextlib.contextmanager
def own_database(server: Database, sql: str = "", prefix: str = "ye_run_t") -> Iterator[Database]:
    """A database of a test module's own on `server`: the reference schema, then `sql`; dropped afterwards."""
    admin = server.with_database("postgres")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    database = _create(admin, name)
    try:
        with contextlib.closing(database.connect("ye-run tests")) as conn:
            schema.install(conn)
            if sql:
                with conn.cursor() as cur:
                    cur.execute(sql)
            conn.commit()
        yield database
    finally:
        _drop(admin, name)


@pytest.fixture(scope="session")
def embedded_server() -> Iterator[Database]:
    with embedded.server(ephemeral=True) as database:
        yield database


@pytest.fixture(scope="session")
def external_server(pytestconfig: pytest.Config) -> Iterator[Database]:
    """A server that is not the embedded default: `YE_TEST_DATABASE_URL`'s, else the run's private one."""
    url = os.environ.get("YE_TEST_DATABASE_URL") or pytestconfig.stash[PRIVATE][0].join()
    admin = Database(parse_url(url))
    name = f"ye_run_test_{uuid.uuid4().hex[:10]}"
    database = _create(admin, name)
    try:
        with contextlib.closing(database.connect("ye-run tests")) as conn:
            schema.install(conn)
        yield database
    finally:
        _drop(admin, name)


@pytest.fixture(scope="session", params=["embedded", "external"])
def db(request: pytest.FixtureRequest) -> Database:
    """The reference schema on each available server (tests run once per server)."""
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture
def fresh_database(db: Database) -> Iterator[Callable[[], Database]]:
    """Makes empty databases on the same server (for schemas built by a test); drops them after."""
    admin = db.with_database("postgres")
    made: list[str] = []

    def make() -> Database:
        name = f"ye_run_t_{uuid.uuid4().hex[:10]}"
        made.append(name)
        return _create(admin, name)

    yield make
    for name in made:
        _drop(admin, name)


@pytest.fixture
def database_with(fresh_database: Callable[[], Database]) -> Callable[..., Database]:
    """A database of its own holding `sql` (after the reference schema, unless install=False)."""

    def make(sql: str = "", install: bool = True) -> Database:
        database = fresh_database()
        with contextlib.closing(database.connect("ye-run tests")) as connection:
            if install:
                schema.install(connection)
            if sql:
                with connection.cursor() as cur:
                    cur.execute(sql)
            connection.commit()
        return database

    return make


@pytest.fixture
def conn(db: Database) -> Iterator:
    with contextlib.closing(db.connect("ye-run tests")) as connection:
        yield connection


def new_tenant() -> str:
    return f"ye_test_{uuid.uuid4().hex[:10]}"


def scenario_file(tmp_path: Path, text: str, name: str = "case.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def password_user(embedded_server: Database):
    """A role that must log in with a password (scram), on the session's embedded server."""
    hba = Path(embedded_server.url.query["host"]) / "pg_hba.conf"
    original = hba.read_text()
    with contextlib.closing(embedded_server.connect(autocommit=True)) as conn, conn.cursor() as cur:
        cur.execute("DROP ROLE IF EXISTS pw_user")
        cur.execute("CREATE ROLE pw_user LOGIN PASSWORD 'right-one'")
        hba.write_text("local all pw_user scram-sha-256\n" + original)
        cur.execute("SELECT pg_reload_conf()")
    yield embedded_server.url.set(username="pw_user")
    with contextlib.closing(embedded_server.connect(autocommit=True)) as conn, conn.cursor() as cur:
        hba.write_text(original)
        cur.execute("SELECT pg_reload_conf()")


@pytest.fixture(scope="module")
def restartable() -> Iterator[tuple[Database, object]]:
    """A server of the module's own, that its tests may stop and start (`tests.engine.test_restart.control`)."""
    holder = Path(tempfile.mkdtemp(prefix="ye-run-restart-"))
    handle = embedded._start(holder / "pg", "delete")
    try:
        yield embedded._prepare(handle.get_uri()), handle
    finally:
        handle.cleanup()
        shutil.rmtree(holder, ignore_errors=True)

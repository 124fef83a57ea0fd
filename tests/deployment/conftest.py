"""Fixtures of the deployment-like harness: its schema in a fresh database, and its listener running on it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from runner.db import schema
from runner.db.connect import Database
from tests.deployment.listener import DeploymentListener, Options, install_schema


@pytest.fixture
def deployment_db(fresh_database: Callable[[], Database]) -> Database:
    """A new database (embedded server, and the external one when configured) holding the deployment-like
    schema and ye-run's own objects (its run registry and history table), as `ye-run db init` leaves them."""
    database = fresh_database()
    with contextlib.closing(database.connect("ye-run tests")) as conn:
        install_schema(conn)
        schema.install(conn, with_reference=False)
    return database


@pytest.fixture
def listener_options() -> Options:
    """One stage call at a time and no lagging-variant recovery: the defaults a test can count on.
    A test sets its own with `@pytest.mark.parametrize("listener_options", [...])`."""
    return Options(workers=1, recover_lagging=False)


@pytest.fixture
def deployment_listener(deployment_db: Database, listener_options: Options) -> Iterator[DeploymentListener]:
    listener = DeploymentListener(deployment_db, listener_options)
    listener.start()
    try:
        yield listener
    finally:
        listener.stop()

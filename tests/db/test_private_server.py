"""The "external" target never skips: without `YE_TEST_DATABASE_URL` it is the run's private server."""

from __future__ import annotations

import contextlib
import os

import psycopg2
import pytest

from runner.db.connect import Database, connect_args, parse_url
from tests.conftest import PRIVATE
from tests.private_server import PrivateServer


def _server_facts(database: Database) -> tuple[str, int | None]:
    with contextlib.closing(database.connect("ye-run tests")) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_database(), inet_server_port()")
        name, port = cur.fetchone()
    return name, port


def test_the_external_target_is_a_server_of_its_own_over_tcp(external_server: Database,
                                                             embedded_server: Database,
                                                             pytestconfig: pytest.Config):
    """It answers, is not marked embedded (so the external code paths run), and is not the embedded server."""
    name, port = _server_facts(external_server)
    assert name == external_server.url.database and not external_server.embedded
    assert _server_facts(embedded_server)[1] is None, "the embedded server is reached over its socket"
    given = os.environ.get("YE_TEST_DATABASE_URL")
    if given:
        assert (external_server.url.host, port) == (parse_url(given).host, parse_url(given).port or 5432)
    else:
        private = pytestconfig.stash[PRIVATE][0]
        assert (external_server.url.host, port) == ("127.0.0.1", external_server.url.port)
        assert (private.pgdata / "postmaster.pid").read_text().splitlines()[3] == str(port)


def test_workers_join_one_private_server_and_stop_ends_it():
    """Two handles on one directory (two xdist workers) get the same server; `stop` stops it and cleans up."""
    first = PrivateServer.named()
    try:
        url = first.join()
        assert PrivateServer(first.directory).join() == url
        assert _server_facts(Database(parse_url(url))) == ("postgres", parse_url(url).port)
    finally:
        first.stop()
    assert not first.directory.exists()
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(**connect_args(parse_url(url))).close()
    first.stop()  # never started, or already stopped: nothing to do

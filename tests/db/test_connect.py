"""Connection failures: one line naming the cause, password masked, exit code 3."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli.main import cli
from runner.db.connect import Database, mask, parse_url
from runner.errors import InfrastructureError, InputError


@pytest.mark.parametrize("text,expected", [
    ("postgresql://u:pw@h:5433/d", "postgresql+psycopg2://u:***@h:5433/d"),
    ("postgres://u@h/d", "postgresql+psycopg2://u@h/d"),
    ("postgresql+psycopg2://u:pw@/d?host=/tmp/sock", "postgresql+psycopg2://u:***@/d?host=%2Ftmp%2Fsock"),
])
def test_urls_are_normalised_and_masked(text: str, expected: str):
    assert mask(parse_url(text)) == expected


@pytest.mark.parametrize("text", ["mysql://u:pw@h/d", "postgresql+asyncpg://u:pw@h/d", "not a url"])
def test_non_postgres_urls_are_bad_input(text: str):
    with pytest.raises(InputError) as caught:
        parse_url(text)
    assert "pw" not in str(caught.value)


def _failure(url: str) -> str:
    with pytest.raises(InfrastructureError) as caught:
        Database(parse_url(url)).connect()
    return str(caught.value)


def test_connection_refused():
    message = _failure("postgresql://postgres:s3cret@127.0.0.1:1/postgres")
    assert message.startswith("cannot reach PostgreSQL at 127.0.0.1:1: connection refused")
    assert "s3cret" not in message and "***" in message


def test_unknown_host():
    assert _failure("postgresql://postgres@no-such-host.invalid/postgres").startswith(
        "cannot resolve host 'no-such-host.invalid'")


def test_missing_database(db: Database):
    name = f"nope_{uuid.uuid4().hex[:6]}"
    url = db.url.set(database=name).render_as_string(hide_password=False)
    assert f"database '{name}' does not exist" in _failure(url)


def test_missing_user(db: Database):
    url = db.url.set(username="no_such_role_x").render_as_string(hide_password=False)
    assert "user 'no_such_role_x' does not exist" in _failure(url)


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


def test_wrong_password_and_no_password(password_user):
    wrong = password_user.set(password="wrong-one").render_as_string(hide_password=False)
    message = _failure(wrong)
    assert message.startswith("wrong password for user 'pw_user'") and "wrong-one" not in message
    assert "wants a password for user 'pw_user'" in _failure(password_user.render_as_string(hide_password=False))
    right = password_user.set(password="right-one")
    Database(right).connect().close()


def test_cli_reports_one_line_and_exit_three():
    result = CliRunner().invoke(cli, ["db", "check", "--database-url", "postgresql://qa:hunter2@127.0.0.1:1/x"])
    assert result.exit_code == 3
    assert result.stderr.strip().splitlines() == [
        "ye-run: error: cannot reach PostgreSQL at 127.0.0.1:1: connection refused "
        "(postgresql+psycopg2://qa:***@127.0.0.1:1/x)"]
    assert "hunter2" not in result.output and "Traceback" not in result.output


def test_env_var_selects_the_database():
    result = CliRunner().invoke(cli, ["db", "check"], env={"YE_DATABASE_URL": "postgresql://qa:pw@127.0.0.1:1/envdb"})
    assert result.exit_code == 3 and "envdb" in result.stderr

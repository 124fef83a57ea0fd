"""Connection failures: one line naming the cause, password masked, exit code 3."""

from __future__ import annotations

import uuid

import pytest
from click.testing import CliRunner

import psycopg2

from runner.cli.main import cli
from runner.db.connect import Database, connect_args, explain, mask, mask_text, parse_url
from runner.errors import InfrastructureError, InputError

SECRET = "Zq9-secret"
"""The password in every form below; it must never be printed."""


@pytest.mark.parametrize("text,expected", [
    ("postgresql://u:pw@h:5433/d", "postgresql+psycopg2://u:***@h:5433/d"),
    ("postgres://u@h/d", "postgresql+psycopg2://u@h/d"),
    ("postgresql+psycopg2://u:pw@/d?host=/tmp/sock", "postgresql+psycopg2://u:***@/d?host=%2Ftmp%2Fsock"),
    ("postgresql://u@h/d?password=pw&sslmode=require", "postgresql+psycopg2://u@h/d?password=***&sslmode=require"),
    ("host=h port=5433 user=u password=pw dbname=d sslmode=require",
     "postgresql+psycopg2://u:***@h:5433/d?sslmode=require"),
    ("host=/tmp/sock dbname=d", "postgresql+psycopg2:///d?host=%2Ftmp%2Fsock"),
    ("password=pw host=h", "postgresql+psycopg2://:***@h"),
])
def test_urls_are_normalised_and_masked(text: str, expected: str):
    assert mask(parse_url(text)) == expected


def test_an_empty_password_is_no_password():
    """`user:@host` (the embedded server's form) leaves libpq free to use PGPASSWORD or ~/.pgpass."""
    assert "password" not in connect_args(parse_url("postgresql://u:@/d?host=/tmp/sock"))


# Each form a password can take, with the password the server must receive.
ACCEPTED = [
    (f"postgresql://u:{SECRET}@h:5433/d", SECRET),
    (f"postgresql://u:{SECRET}%40x@h/d", f"{SECRET}@x"),
    (f"postgresql://u:{SECRET}/x@h/d", f"{SECRET}/x"),
    (f"postgresql://u:{SECRET}:x@h/d", f"{SECRET}:x"),
    (f"postgresql://u:{SECRET}?x@h/d", f"{SECRET}?x"),
    (f"postgresql://u@h/d?password={SECRET}", SECRET),
    (f"postgresql://u@h/d?sslmode=require&password={SECRET}", SECRET),
    (f"postgresql://u@/d?host=/tmp/sock&password={SECRET}", SECRET),
    (f"host=h user=u password={SECRET} dbname=d", SECRET),
    (f"host=h user=u password = {SECRET} dbname=d", SECRET),
    (f"host=h user=u password='{SECRET} with spaces' dbname=d", f"{SECRET} with spaces"),
    (f"host=h user=u password='{SECRET} it\\'s \\\\ q' dbname=d", f"{SECRET} it's \\ q"),
    (f"password='{SECRET}' host=/tmp/sock", SECRET),
]
REFUSED = [
    (f"postgresql://u:{SECRET}@x@h/d", "the password contains '@', '/' or ':'; percent-encode it"),
    (f"postgresql://u:{SECRET}@x/y@h:5432/d", "the password contains '@', '/' or ':'; percent-encode it"),
    (f"postgresql://u:{SECRET}@x:y@h/d", "the password contains '@', '/' or ':'; percent-encode it"),
    (f"postgresql://u:{SECRET}@h:abc/d", "bad port 'abc' in postgresql://u:***@h:abc/d"),
    (f"postgresql://u:{SECRET}@h:99999/d", "bad port '99999'"),
    (f"postgresql://u@h:abc/d?password={SECRET}", "bad port 'abc' in postgresql://u@h:abc/d?password=***"),
    (f"host=h port=abc password={SECRET}", "bad port 'abc' in host=h port=abc password=***"),
    (f"postgresql://u@h/d?sslpassword={SECRET}&sslmode=x&Password={SECRET}", "unknown connection parameter 'Password'"),
    (f"postgresql://u@h/d?PASSWORD={SECRET}", "unknown connection parameter 'PASSWORD'"),
    (f"host=h usr=u password={SECRET} dbname=d", "not a database URL: host=h usr=u password=***: unknown keyword 'usr'"),
    (f"host=h password={SECRET} usr=u", "not a database URL: host=h password=*** (expected"),
    (f"host=h password={SECRET} with spaces", "not a database URL: host=h password=*** (expected"),
    (f"host=h password='{SECRET} unterminated", "not a database URL: host=h password=*** (expected"),
    (f"mysql://u:{SECRET}@h/d", "not a PostgreSQL URL: mysql://u:***@h/d"),
    (f"mysql://u@h/d?password={SECRET}", "not a PostgreSQL URL: mysql://u@h/d?password=***"),
    (f"postgresql+asyncpg://u:{SECRET}@h/d", "unsupported driver 'asyncpg'"),
    ("not a url", "not a database URL: not a url (expected postgresql://"),
]


@pytest.mark.parametrize("text,password", ACCEPTED)
def test_every_password_form_reaches_the_server_and_is_masked(text: str, password: str):
    url = parse_url(text)
    assert connect_args(url)["password"] == password
    assert SECRET not in mask(url)
    assert SECRET not in mask_text(text)


@pytest.mark.parametrize("text,message", REFUSED)
def test_a_refused_url_says_why_without_its_password(text: str, message: str):
    with pytest.raises(InputError) as caught:
        parse_url(text)
    assert message in str(caught.value) and SECRET not in str(caught.value)
    assert "\n" not in str(caught.value)
    assert SECRET not in mask_text(text)


@pytest.mark.parametrize("libpq_says", [
    'FATAL:  password authentication failed for user "u"',
    "fe_sendauth: no password supplied",
    'FATAL:  database "d" does not exist',
    "could not connect to server: Connection refused",
    f"invalid dsn: something odd near password={SECRET} dbname=d",
    f"cannot use postgresql://u:{SECRET}@x@h/d?password={SECRET}&sslpassword='{SECRET}'",
])
@pytest.mark.parametrize("text", [text for text, _ in ACCEPTED])
def test_explain_never_shows_the_password(text: str, libpq_says: str):
    message = explain(psycopg2.OperationalError(libpq_says), parse_url(text))
    assert SECRET not in message and "***" in message


@pytest.mark.parametrize("text,expected", [
    ("x postgresql://u:pw@h/d y", "x postgresql://u:***@h/d y"),
    ("postgresql://u:p@w/x:y@h:1/d?a=1", "postgresql://u:***@h:1/d?a=1"),
    ("postgresql://u@h/d?a=1&SSLPassword=pw&b=2", "postgresql://u@h/d?a=1&SSLPassword=***&b=2"),
    ("host=h password=pw dbname=d", "host=h password=*** dbname=d"),
    ("host=h password='p w\\' x' dbname=d", "host=h password=*** dbname=d"),
    ("password authentication failed for user \"u\"", "password authentication failed for user \"u\""),
])
def test_mask_text(text: str, expected: str):
    assert mask_text(text) == expected


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

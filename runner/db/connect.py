"""Connecting to PostgreSQL: URLs, masked display, raw psycopg2 connections, clear failures.

SQLAlchemy parses the URL and builds psycopg2's connect arguments (so every URL form it
accepts works); the hot paths use raw psycopg2 connections. A connection failure becomes
one InfrastructureError line that says what went wrong, with the password masked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from runner.errors import InfrastructureError, InputError

DEFAULT_CONNECT_TIMEOUT = 10
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}
"""TCP keepalives: a half-open connection is noticed in about 11 s instead of hours."""


def parse_url(text: str) -> URL:
    """A SQLAlchemy URL for PostgreSQL with the psycopg2 driver; InputError otherwise."""
    try:
        url = make_url(text)
    except ArgumentError:
        raise InputError(f"not a database URL: {mask_text(text)} "
                         "(expected postgresql://user:password@host:port/database)") from None
    backend, _, driver = url.drivername.partition("+")
    if backend not in ("postgresql", "postgres"):
        raise InputError(f"not a PostgreSQL URL: {mask(url)}")
    if driver not in ("", "psycopg2"):
        raise InputError(f"unsupported driver {driver!r} in {mask(url)}: use postgresql+psycopg2://")
    if url.password == "":
        url = url.set(password=None)
    return url.set(drivername="postgresql+psycopg2")


def mask(url: URL) -> str:
    """The URL as it may be printed: the password, if any, is replaced by ***."""
    return url.render_as_string(hide_password=True)


def mask_text(text: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", text)


def connect_args(url: URL) -> dict[str, Any]:
    """psycopg2.connect keyword arguments for a URL (host may be a socket directory)."""
    args: dict[str, Any] = {"dbname": url.database or "postgres", "connect_timeout": DEFAULT_CONNECT_TIMEOUT}
    if url.host:
        args["host"] = url.host
    if url.port:
        args["port"] = url.port
    if url.username:
        args["user"] = url.username
    if url.password is not None:
        args["password"] = url.password
    for key, value in url.query.items():
        args[key] = value[-1] if isinstance(value, tuple) else value
    return args


class StatementCounter:
    """Counts the statements sent through connections made with it (thread-safe enough: GIL-atomic +=)."""

    def __init__(self) -> None:
        self.count = 0

    def cursor_factory(self) -> type:
        counter = self

        class CountingCursor(psycopg2.extensions.cursor):
            def execute(self, query, vars=None):  # type: ignore[no-untyped-def, override]
                counter.count += 1
                return super().execute(query, vars)

        return CountingCursor


@dataclass(frozen=True)
class Database:
    """Where the runner's data lives; makes connections that report failures plainly."""

    url: URL
    embedded: bool = False

    @property
    def display(self) -> str:
        return mask(self.url)

    @property
    def name(self) -> str:
        return self.url.database or "postgres"

    def connect(self, application_name: str = "ye-run", autocommit: bool = False,
                keepalives: bool = False, **extra: Any) -> psycopg2.extensions.connection:
        """A new psycopg2 connection; InfrastructureError saying why when it cannot be made."""
        args = {**connect_args(self.url), "application_name": application_name[:63], **extra}
        if keepalives:
            args = {**KEEPALIVES, **args}
        try:
            conn = psycopg2.connect(**args)
        except psycopg2.OperationalError as exc:
            raise InfrastructureError(explain(exc, self.url)) from None
        conn.autocommit = autocommit
        return conn

    def with_database(self, name: str) -> Database:
        return Database(self.url.set(database=name), self.embedded)


def explain(exc: psycopg2.Error, url: URL) -> str:
    """One line naming the cause of a connection failure; never the password."""
    text = str(exc).strip()
    where = f"{url.host or 'local socket'}{':' + str(url.port) if url.port else ''}"
    user = url.username or "(default user)"
    checks = [
        (r'database "([^"]+)" does not exist', lambda m: f"database {m.group(1)!r} does not exist on {where}"),
        (r"password authentication failed", lambda m: f"wrong password for user {user!r} on {where}"),
        (r"no password supplied|fe_sendauth", lambda m: f"the server at {where} wants a password for user "
                                                         f"{user!r} and none was given"),
        (r'role "([^"]+)" does not exist', lambda m: f"user {m.group(1)!r} does not exist on {where}"),
        (r'could not translate host name "([^"]+)"', lambda m: f"cannot resolve host {m.group(1)!r}"),
        (r"Connection refused", lambda m: f"cannot reach PostgreSQL at {where}: connection refused"),
        (r"timeout expired|timed out", lambda m: f"cannot reach PostgreSQL at {where}: timed out"),
        (r"No such file or directory", lambda m: f"cannot reach PostgreSQL at {where}: no server socket there"),
        (r"pg_hba.conf", lambda m: f"the server at {where} refuses user {user!r} (pg_hba.conf)"),
    ]
    for pattern, message in checks:
        match = re.search(pattern, text)
        if match:
            return f"{message(match)} ({mask(url)})"
    first_line = mask_text(text.splitlines()[0]) if text else type(exc).__name__
    return f"cannot connect to {mask(url)}: {first_line}"

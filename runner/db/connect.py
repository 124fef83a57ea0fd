"""Connecting to PostgreSQL: URLs, masked display, raw psycopg2 connections, clear failures.

A database is given as a URL (SQLAlchemy's form, read by `runner.db.url`) or as a libpq keyword
DSN (`host=... dbname=...`); both become one URL, whose psycopg2 connect arguments the hot paths use with raw
psycopg2 connections. A password is never printed, in any form: `mask` and `mask_text` hide
it in URL userinfo, in `?password=` / `?sslpassword=` query parameters and in keyword DSNs.
A connection failure becomes one InfrastructureError line that says what went wrong.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions

from runner.db.url import URL, UnparsableURL, make_url
from runner.errors import InfrastructureError, InputError

DEFAULT_CONNECT_TIMEOUT = 10
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
              **({"tcp_user_timeout": 10_000} if psycopg2.extensions.libpq_version() >= 120000 else {})}
"""A half-open connection is noticed in about 11 s instead of hours: keepalives while it is idle, and
`tcp_user_timeout` (ms, libpq 12+) while a query waits, since keepalives are not sent while sent data is
unacknowledged."""

HIDDEN = "***"
_EXPECTED = "expected postgresql://user:password@host:port/database or host=... dbname=..."
_ENCODE = "the password contains '@', '/' or ':'; percent-encode it (%40, %2F, %3A)"
_PORTS = "a port is a number from 1 to 65535"
_SCHEME = re.compile(r"[A-Za-z][\w+.-]*://")
_URL_IN_TEXT = re.compile(r"[A-Za-z][\w+.-]*://\S*")
_SECRET_KEY = r"(?:ssl)?(?:pas+w?o?r?d|passwd|pwd|pass|secret)"
"""libpq's secret keywords (password, sslpassword) and their misspellings, which still carry the password;
matched case-insensitively."""
_QUERY_SECRET = re.compile(rf"([?&]{_SECRET_KEY}=)[^&]*", re.I)
_KEYWORD_SECRET = re.compile(
    rf"(?<![\w?&])({_SECRET_KEY}\s*=\s*)('(?:[^'\\]|\\.)*'?|.*?(?=\s+\w+\s*=|$))", re.I | re.M)
"""A keyword's value: quoted (backslash escapes), else everything up to the next `keyword=`."""
_REST_AFTER_SECRET = re.compile(rf"(?<![\w?&])({_SECRET_KEY}\s*=).*", re.I | re.S)


def parse_url(text: str) -> URL:
    """A postgresql+psycopg2 URL from a URL or a libpq keyword DSN; InputError (password masked) otherwise."""
    text = text.strip()
    url = _from_uri(text) if _SCHEME.match(text) else _from_keywords(text)
    backend, _, driver = url.drivername.partition("+")
    if backend not in ("postgresql", "postgres"):
        raise InputError(f"not a PostgreSQL URL: {mask(url)}")
    if driver not in ("", "psycopg2"):
        raise InputError(f"unsupported driver {driver!r} in {mask(url)}: use postgresql+psycopg2://")
    if url.port is not None and not 0 < url.port < 65536:
        raise InputError(f"bad port '{url.port}' in {mask(url)}: {_PORTS}")
    if url.password == "":  # `user:@host`: no password, so libpq may still use PGPASSWORD or ~/.pgpass
        url = url._replace(password=None)  # (URL.set ignores None)
    url = url.set(drivername="postgresql+psycopg2")
    _check_parameters(url)
    return url


def _from_uri(text: str) -> URL:
    userinfo, hostpart = _split_userinfo(text)
    if userinfo is not None and "@" in userinfo.partition(":")[2]:  # the URL grammar would split at its first '@'
        raise InputError(f"cannot read the database URL {_mask_url(text)}: {_ENCODE}")
    try:
        return make_url(text)
    except UnparsableURL:
        raise InputError(f"not a database URL: {_mask_url(text)} ({_EXPECTED})") from None
    except ValueError:  # int(port)
        raise InputError(f"bad port {_port_text(hostpart)!r} in {_mask_url(text)}: {_PORTS}") from None


def _split_userinfo(text: str) -> tuple[str | None, str]:
    """(userinfo or None, what follows it) of a URL; the userinfo ends at the LAST '@' before the host.

    That is the last '@' before the query, or the last '@' at all when a '?' comes first (a
    password may hold '?'); a password holding '@', ':' or '/' unencoded is still all inside.
    """
    rest = text[_SCHEME.match(text).end():]  # type: ignore[union-attr]
    head = rest.split("?", 1)[0]
    at = head.rfind("@") if "@" in head else rest.rfind("@")
    if at < 0:
        return None, rest
    return rest[:at], rest[at + 1:]


def _port_text(hostpart: str) -> str:
    hostport = re.split(r"[/?]", hostpart, maxsplit=1)[0]
    return hostport.rsplit("]", 1)[-1].partition(":")[2]


def _from_keywords(text: str) -> URL:
    """A URL from a libpq keyword DSN; leftover keywords become query parameters."""
    try:
        params = psycopg2.extensions.parse_dsn(text)
    except psycopg2.ProgrammingError as exc:
        raise _not_a_url(text, _unknown_keyword(str(exc), text)) from None
    if not params:
        raise _not_a_url(text)
    host, port = params.pop("host", None), params.pop("port", None) or None
    if host and (host.startswith("/") or "," in host):  # a socket directory or several hosts: as ?host=
        params["host"], host = host, None
    if port is not None and not port.isdigit():
        if not re.fullmatch(r"\d+(,\d+)+", port):
            raise InputError(f"bad port {port!r} in {mask_text(text)}: {_PORTS}")
        params["port"], port = port, None
    return URL.create("postgresql+psycopg2", username=params.pop("user", None),
                      password=params.pop("password", None), host=host, port=int(port) if port else None,
                      database=params.pop("dbname", None), query=params)


def _not_a_url(text: str, reason: str = "") -> InputError:
    """A DSN libpq cannot parse: where its password ends is unknown, so all that follows it is hidden."""
    masked = _REST_AFTER_SECRET.sub(rf"\g<1>{HIDDEN}", mask_text(text))
    return InputError(f"not a database URL: {masked}{': ' + reason if reason else ''} ({_EXPECTED})")


def _unknown_keyword(libpq_error: str, text: str) -> str:
    """libpq's unknown keyword, named only when it is visible in the masked DSN anyway."""
    match = re.search(r'invalid connection option "(\w+)"', libpq_error)
    visible = _REST_AFTER_SECRET.sub("", mask_text(text))
    if match and re.search(rf"(?<!\S){re.escape(match.group(1))}\s*=", visible):
        return f"unknown keyword {match.group(1)!r}"
    return ""


def _check_parameters(url: URL) -> None:
    """Query parameters are libpq keywords (case-sensitive): a typo is bad input now, not at connect."""
    try:
        psycopg2.extensions.make_dsn(**{key: _last(value) for key, value in url.query.items()})
    except psycopg2.ProgrammingError as exc:
        match = re.search(r'invalid connection option "(\w+)"', str(exc))
        what = f"unknown connection parameter {match.group(1)!r}" if match else "bad connection parameters"
        raise InputError(f"{what} in {mask(url)} (the query takes libpq keywords, in lower case: "
                         "?password=, ?sslmode=, ?host=, ...)") from None


def _last(value: str | tuple[str, ...]) -> str:
    return value[-1] if isinstance(value, tuple) else value


def mask(url: URL) -> str:
    """The URL as it may be printed: its password, and every ?password= or ?sslpassword=, is ***."""
    if url.username is None and url.password is not None:  # rendering would drop it unseen
        url = url.set(username="")
    return _QUERY_SECRET.sub(rf"\g<1>{HIDDEN}", url.render_as_string(hide_password=True))


def _mask_url(text: str) -> str:
    """One URL's text (maybe unparseable) with its userinfo password and secret query parameters hidden."""
    userinfo, hostpart = _split_userinfo(text)
    if userinfo is not None and ":" in userinfo:
        scheme = _SCHEME.match(text).group()  # type: ignore[union-attr]
        text = f"{scheme}{userinfo.partition(':')[0]}:{HIDDEN}@{hostpart}"
    return _QUERY_SECRET.sub(rf"\g<1>{HIDDEN}", text)


def mask_text(text: str) -> str:
    """Any text with passwords hidden: in URLs (userinfo, ?password=) and in keyword DSNs (password=...)."""
    text = _URL_IN_TEXT.sub(lambda m: _mask_url(m.group()), text)
    return _KEYWORD_SECRET.sub(rf"\g<1>{HIDDEN}", text)


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
        args[key] = _last(value)
    return args


@contextlib.contextmanager
def autocommitted(conn: psycopg2.extensions.connection) -> Iterator[psycopg2.extensions.connection]:
    """Statements that are each a whole transaction (a read, or one write) sent without the BEGIN and COMMIT
    round trips psycopg2 adds around them; several statements in one `execute` still share one implicit
    transaction. Inside an open transaction the connection is left as it is (the caller's commit ends it)."""
    if conn.autocommit or conn.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        yield conn
        return
    conn.autocommit = True
    try:
        yield conn
    finally:
        if not conn.closed:
            conn.autocommit = False


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
                keepalives: bool = True, **extra: Any) -> psycopg2.extensions.connection:
        """A new psycopg2 connection; InfrastructureError saying why when it cannot be made. Every connection
        notices a half-open link (KEEPALIVES): one that blocks the run's loop would stall the observer with it."""
        args = {**connect_args(self.url), "application_name": application_name[:63], **extra}
        if keepalives:
            args = {**KEEPALIVES, **args}
        try:
            conn = psycopg2.connect(**args)
        except psycopg2.OperationalError as exc:
            raise InfrastructureError(explain(exc, self.url)) from None
        except psycopg2.ProgrammingError as exc:  # libpq refused the arguments themselves
            raise InputError(f"cannot connect to {mask(self.url)}: {mask_text(str(exc).strip())}") from None
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

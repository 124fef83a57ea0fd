"""Database URLs: parsed and rendered exactly as SQLAlchemy 2 does, without importing SQLAlchemy.

Importing SQLAlchemy took a quarter of a second of every run's start (it loads its whole SQL
layer), and ye-run only ever used its URL. This is that URL: the same grammar, the same
unquoting, the same rendering, the same `set` (None leaves a field as it is; `_replace` sets
None). tests/db/test_url.py holds it equal to SQLAlchemy's on generated URLs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Union
from urllib.parse import parse_qsl, quote, quote_plus, unquote

QueryValue = Union[str, tuple[str, ...]]

_URL = re.compile(
    r"""
        (?P<name>[\w\+]+)://
        (?:
            (?P<username>[^:/]*)
            (?::(?P<password>[^@]*))?
        @)?
        (?:
            (?:
                \[(?P<ipv6host>[^/\?]+)\] |
                (?P<ipv4host>[^/:\?]+)
            )?
            (?::(?P<port>[^/\?]*))?
        )?
        (?:/(?P<database>[^\?]*))?
        (?:\?(?P<query>.*))?
    """,
    re.X,
)


class UnparsableURL(ValueError):
    """The text is not `driver://...` at all (a bad port is a plain ValueError, from int())."""


class Query(dict):  # type: ignore[type-arg]
    """A URL's query parameters: read-only and hashable, so a URL (and a Database) can be a key."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))

    def _read_only(self, *args: object, **kwargs: object) -> None:
        raise TypeError("a URL's query is read-only: use URL.set(query=...)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _read_only  # type: ignore[assignment]


def _query(items: Mapping[str, QueryValue | Sequence[str]] | None) -> Query:
    if items is None:
        return Query()
    return Query({key: value if isinstance(value, str) else tuple(value) for key, value in items.items()})


class URL(NamedTuple):
    drivername: str
    username: str | None
    password: str | None
    host: str | None
    port: int | None
    database: str | None
    query: Query

    @classmethod
    def create(cls, drivername: str, username: str | None = None, password: str | None = None,
               host: str | None = None, port: int | None = None, database: str | None = None,
               query: Mapping[str, QueryValue | Sequence[str]] | None = None) -> URL:
        return cls(drivername, username, password, host, int(port) if port is not None else None, database,
                   _query(query))

    def set(self, drivername: str | None = None, username: str | None = None, password: str | None = None,
            host: str | None = None, port: int | None = None, database: str | None = None,
            query: Mapping[str, QueryValue | Sequence[str]] | None = None) -> URL:
        """A copy with the fields given changed; None leaves a field as it is (`_replace` sets None)."""
        changes = {name: value for name, value in (("drivername", drivername), ("username", username),
                                                   ("password", password), ("host", host), ("database", database))
                   if value is not None}
        if port is not None:
            changes["port"] = int(port)  # type: ignore[assignment]
        if query is not None:
            changes["query"] = _query(query)  # type: ignore[assignment]
        return self._replace(**changes)

    def update_query_dict(self, parameters: Mapping[str, QueryValue | Sequence[str]]) -> URL:
        """A copy with these query parameters added or replaced."""
        return self.set(query={**self.query, **parameters})

    def render_as_string(self, hide_password: bool = True) -> str:
        text = self.drivername + "://"
        if self.username is not None:
            text += quote(self.username, safe=" +")
            if self.password is not None:
                text += ":" + ("***" if hide_password else quote(str(self.password), safe=" +"))
            text += "@"
        if self.host is not None:
            text += f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            text += ":" + str(self.port)
        if self.database is not None:
            text += "/" + quote(self.database, safe=" +/")
        if self.query:
            text += "?" + "&".join(f"{quote_plus(key)}={quote_plus(element)}" for key in sorted(self.query)
                                   for element in _as_list(self.query[key]))
        return text

    def __repr__(self) -> str:
        return self.render_as_string()

    __str__ = __repr__


def _as_list(value: QueryValue) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def make_url(text: str) -> URL:
    """`driver://user:password@host:port/database?key=value`, as SQLAlchemy's make_url reads it."""
    match = _URL.match(text)
    if match is None:
        raise UnparsableURL("not driver://...")
    parts = match.groupdict()
    query: dict[str, QueryValue] | None = None
    if parts["query"] is not None:
        query = {}
        for key, value in parse_qsl(parts["query"]):
            if key in query:
                query[key] = (*_as_list(query[key]), value)
            else:
                query[key] = value
    username, password, database = (unquote(parts[name]) if parts[name] is not None else None
                                    for name in ("username", "password", "database"))
    port = int(parts["port"]) if parts["port"] is not None else None  # "host:" is a ValueError, as in SQLAlchemy
    return URL.create(parts["name"], username, password, parts["ipv4host"] or parts["ipv6host"], port, database,
                      query)

"""runner.db.url reads and writes URLs exactly as SQLAlchemy 2 does (SQLAlchemy is the oracle here).

ye-run dropped SQLAlchemy from its start-up path (a quarter of a second of every run); these
tests hold the replacement to SQLAlchemy's make_url and render_as_string on generated URLs,
including the awkward ones: '@', ':', '/', '?', '%' and '&' in every part, IPv6 hosts, repeated
query keys, empty and bad ports.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url as sqlalchemy_make_url
from sqlalchemy.exc import ArgumentError

from runner.db.url import URL, Query, UnparsableURL, make_url

AWKWARD = st.text(alphabet=st.sampled_from(list("abcXYZ019_-.~ @:/?#%&=+[]'\"\\é中")), max_size=8)
PERCENT = st.sampled_from(["%40", "%3A", "%2F", "%25", "%3F", "%zz", "%"])


@st.composite
def url_texts(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["postgresql", "postgresql+psycopg2", "postgres", "mysql+pymysql", "bad scheme"]))
    part = st.one_of(AWKWARD, PERCENT, st.builds(lambda a, b: a + b, AWKWARD, PERCENT))
    user = draw(st.one_of(st.none(), part))
    password = draw(st.one_of(st.none(), part))
    host = draw(st.one_of(st.none(), st.just("db.example"), st.just("[::1]"), st.just("[fe80::1%eth0]"), part))
    port = draw(st.one_of(st.none(), st.just(""), st.integers(0, 70000).map(str), st.just("54x"), st.just("+5")))
    database = draw(st.one_of(st.none(), part))
    query = draw(st.one_of(st.none(), st.lists(st.tuples(st.sampled_from(["sslmode", "host", "password", "a b", ""]),
                                                         part), max_size=4)))
    text = f"{scheme}://"
    if user is not None:
        text += user + (f":{password}" if password is not None else "") + "@"
    text += host or ""
    if port is not None:
        text += f":{port}"
    if database is not None:
        text += f"/{database}"
    if query is not None:
        text += "?" + "&".join(f"{key}={value}" for key, value in query)
    return text


def parsed(parse, text: str):  # type: ignore[no-untyped-def]
    """(fields, shown, plain) of a parse, or the kind of error it raised."""
    try:
        url = parse(text)
    except (ArgumentError, UnparsableURL):
        return "unparsable"
    except ValueError:
        return "bad port"
    fields = (url.drivername, url.username, url.password, url.host, url.port, url.database, dict(url.query))
    return fields, url.render_as_string(), url.render_as_string(hide_password=False)


@settings(max_examples=600, deadline=None)
@given(url_texts())
def test_parsing_and_rendering_match_sqlalchemy(text: str) -> None:
    assert parsed(make_url, text) == parsed(sqlalchemy_make_url, text)


@settings(max_examples=200, deadline=None)
@given(url_texts(), st.one_of(st.none(), AWKWARD), st.one_of(st.none(), AWKWARD),
       st.one_of(st.none(), st.integers(1, 65535)))
def test_set_matches_sqlalchemy(text: str, password: str | None, database: str | None, port: int | None) -> None:
    try:
        ours, theirs = make_url(text), sqlalchemy_make_url(text)
    except (ArgumentError, ValueError):
        return
    ours = ours.set(password=password, database=database, port=port)
    theirs = theirs.set(password=password, database=database, port=port)
    assert ours.render_as_string(hide_password=False) == theirs.render_as_string(hide_password=False)
    assert ours._replace(password=None).password is None


@pytest.mark.parametrize("text", ["postgresql://u:p@h:5432/d?sslmode=require&host=/tmp&host=/run",
                                  "postgresql://u@[::1]:5433/d", "postgresql:///d?host=/var/run/postgresql"])
def test_examples_round_trip(text: str) -> None:
    url = make_url(text)
    assert make_url(url.render_as_string(hide_password=False)) == url
    assert str(url) == str(sqlalchemy_make_url(text))


def test_a_url_is_hashable_and_its_query_read_only() -> None:
    url = URL.create("postgresql", "u", "p", "h", 5432, "d", {"sslmode": "require", "host": ["/a", "/b"]})
    assert url.query["host"] == ("/a", "/b")
    assert hash(url) == hash(make_url(url.render_as_string(hide_password=False)))
    with pytest.raises(TypeError):
        url.query["sslmode"] = "disable"  # type: ignore[index]
    assert isinstance(url.update_query_dict({"sslmode": "disable"}).query, Query)
    assert url.update_query_dict({"sslmode": "disable"}).query["sslmode"] == "disable"
    assert url.query["sslmode"] == "require"

"""SQL checks read and change nothing: refused by the parser at validation, by the catalog before
seeding, and, should both be bypassed, by a read-only connection that is reset after every check.

Every test proves "nothing changed" the same way: a hash of every user table (and of the large
objects), the canary sequence, no advisory lock left, and a bystander backend still alive.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest
from click.testing import CliRunner

from runner.cli.main import cli
from runner.db import readonly
from runner.db.connect import Database
from runner.engine.checks import CheckSession, Refused
from runner.scenario.model import SqlCheck
from tests.conftest import own_database
from tests.engine.helpers import run
from tests.test_sqlsafety import REFUSED

CANARY = """
CREATE TABLE canary (n int PRIMARY KEY, note text);
INSERT INTO canary SELECT g, 'row ' || g FROM generate_series(1, 5) g;
CREATE SEQUENCE canary_seq;
CREATE FUNCTION purge_canary() RETURNS int LANGUAGE plpgsql AS $$
BEGIN DELETE FROM canary; RETURN 0; END $$;
CREATE FUNCTION dblink_exec(text, text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN DELETE FROM canary; RETURN 'OK'; END $$;
CREATE FUNCTION wipe_eq(int, int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN DELETE FROM canary; RETURN $1 = $2; END $$;
CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = wipe_eq);
CREATE FUNCTION canary_size() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM canary $$;
"""

BYSTANDER = "ye-run bystander"

CATALOG_REFUSED = [
    # the reproduced ones
    (f"select pg_terminate_backend(pid) from pg_stat_activity where application_name = '{BYSTANDER}'",
     "calls pg_terminate_backend(), which is volatile"),
    ("select pg_advisory_lock(4242)", "calls pg_advisory_lock(), which is volatile"),
    # functions that change something outside the tables, or wait, or read the server's files
    ("select pg_advisory_xact_lock(4242)", "calls pg_advisory_xact_lock(), which is volatile"),
    ("select pg_try_advisory_lock(4242)", "calls pg_try_advisory_lock(), which is volatile"),
    ("select pg_cancel_backend(pid) from pg_stat_activity", "calls pg_cancel_backend(), which is volatile"),
    ("select nextval('canary_seq')", "calls nextval(), which is volatile"),
    ("select setval('canary_seq', 100)", "calls setval(), which is volatile"),
    ("select set_config('default_transaction_read_only', 'off', false)", "calls set_config(), which is volatile"),
    ("select pg_catalog.set_config('statement_timeout', '0', false)",
     "calls pg_catalog.set_config(), which is volatile"),
    ("select pg_sleep(60)", "calls pg_sleep(), which is volatile"),
    ("select pg_read_file('/etc/passwd')", "calls pg_read_file(), which is volatile"),
    ("select lo_import('/etc/passwd')", "calls lo_import(), which is volatile"),
    ("select pg_notify('jobs_variants_changed', 'fake')", "calls pg_notify(), which is volatile"),
    ("select query_to_xml('select purge_canary()', true, true, '')", "calls query_to_xml(), which is volatile"),
    ("select txid_current()", "calls txid_current(), which assigns a transaction id"),
    ("select pg_current_xact_id()", "calls pg_current_xact_id(), which"),
    # user-defined functions and operators
    ("select dblink_exec('dbname=elsewhere', 'delete from canary')", "calls dblink_exec(), which is volatile"),
    ("select purge_canary()", "calls purge_canary(), which is volatile"),
    ("select public.purge_canary()", "calls public.purge_canary(), which is volatile"),
    ("select count(*) from canary where n = (select purge_canary())", "calls purge_canary(), which is volatile"),
    ("with w as (select purge_canary()) select * from w", "calls purge_canary(), which is volatile"),
    ("select * from canary where pg_try_advisory_lock(n) order by n", "calls pg_try_advisory_lock(), which is volatile"),
    ("select 1 === 2", "uses operator ===, implemented by a volatile function"),
    ("select 1 operator(public.===) 2", "uses operator public.===, implemented by a volatile function"),
    # what only the catalog knows: names
    ("select idd from canary", 'column "idd" does not exist'),
    ("select * from canaryy", 'relation "canaryy" does not exist'),
    ("select no_such_function(1)", "function no_such_function(integer) does not exist"),
]

CATALOG_ACCEPTED = [
    "select count(*) from jobs_variants where job_id = :job_id",
    "select ':job_id' || '%'",
    "select :tenant_id",
    "select :job_id",
    "select count(*) from jobs where tenant_id = :tenant_id and job_id = :job_id",
    "select now(), random(), clock_timestamp(), timeofday(), gen_random_uuid(), canary_size()",
    "select n::text, row_number() over (order by n) from canary",
    "with c as (select * from canary) select count(*) from c join canary using (n)",
    "values (1)",
    "table canary",
]


@dataclass
class Guarded:
    database: Database
    before: dict[str, object]


@pytest.fixture(scope="module")
def guarded(db: Database) -> Iterator[Guarded]:
    """A database of this module's own: the reference schema, a canary table, and traps."""
    with own_database(db, CANARY) as database:
        yield Guarded(database, fingerprint(database))


@pytest.fixture
def bystander(guarded: Guarded) -> Iterator[psycopg2.extensions.connection]:
    """Another backend on the database; a check that could terminate it would show."""
    with contextlib.closing(guarded.database.connect(BYSTANDER, autocommit=True)) as conn:
        yield conn
        with conn.cursor() as cur:
            cur.execute("select 1")
            assert cur.fetchone() == (1,)


def fingerprint(database: Database) -> dict[str, object]:
    """A hash of every user table and of the large objects, the canary sequence, and advisory locks held."""
    with contextlib.closing(database.connect("ye-run tests")) as conn, conn.cursor() as cur:
        cur.execute("SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
                    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' "
                    "ORDER BY 1")
        tables = [row[0] for row in cur.fetchall()] + ["pg_catalog.pg_largeobject_metadata"]
        out: dict[str, object] = {}
        for table in tables:
            cur.execute(f"SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) "
                        f"FROM {table} t")
            out[table] = cur.fetchone()
        cur.execute("SELECT last_value, is_called FROM canary_seq")
        out["canary_seq"] = cur.fetchone()
        cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "  # this database's:
                    "(SELECT oid FROM pg_database WHERE datname = current_database())")  # others may run beside
        out["advisory locks"] = cur.fetchone()[0]
        conn.rollback()
    assert out["advisory locks"] == 0
    assert out["public.canary"][0] == 5
    return out


def url(database: Database) -> str:
    return database.url.render_as_string(hide_password=False)


def write_scenario(tmp_path: Path, queries: list[str], name: str = "checks") -> Path:
    lines = [f"name: {name}", "tenant: {id: ye_sql_safety, isolate: true}", "expect:", "  sql:"]
    for i, query in enumerate(queries):
        lines += [f"    - name: check {i}", f"      query: {json.dumps(query)}", "      rows: 1"]
    path = tmp_path / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- validation: the parser, no database ------------------------------------------------


def test_validate_refuses_every_bypass_attempt_with_a_located_message(tmp_path: Path):
    queries = [query for query, _ in REFUSED if query.strip()]  # an empty query is the schema's to refuse
    path = write_scenario(tmp_path, queries)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    for i, query in enumerate(queries):
        message = dict(REFUSED)[query]
        line = 6 + 3 * i
        found = [text for text in lines if text.startswith(f"{path}:{line}:") and message in text]
        assert found, (query, message, [text for text in lines if f"{path}:{line}:" in text])
        assert f": $.expect.sql[{i}].query: " in found[0]


def test_validate_points_at_the_statement_the_query_hides(tmp_path: Path):
    path = write_scenario(tmp_path, ["select $a$'$a$ ; commit; delete from canary --'",
                                     "select E'\\'' ; commit; delete from canary --'",
                                     "copy (select 1) to program 'touch pwned'"])
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1
    one = "an SQL check is one read-only query (SELECT, VALUES or TABLE)"
    assert result.stdout.splitlines() == [
        f"{path}:6:32: $.expect.sql[0].query: {one}; found 3 statements",  # `commit`, inside the quotes
        f"{path}:9:14: $.expect.sql[1].query: {one}; found 3 statements (at character 16)",  # escaped: at the value
        f"{path}:12:15: $.expect.sql[2].query: {one}; found COPY",
    ]


# --- the catalog, before seeding --------------------------------------------------------


@pytest.mark.parametrize("query,message", CATALOG_REFUSED, ids=[f"{i:02d}" for i in range(len(CATALOG_REFUSED))])
def test_the_catalog_refuses_what_may_change_something(guarded: Guarded, bystander, query: str, message: str):
    check = SqlCheck("trap", query, rows=1)
    with contextlib.closing(guarded.database.connect("ye-run tests")) as conn:
        problems = readonly.precheck(conn, [check])
    assert len(problems) == 1 and message in problems[0], problems
    assert problems[0].startswith("$.expect.sql[0].query: sql check 'trap': ")
    assert fingerprint(guarded.database) == guarded.before


def test_the_catalog_accepts_plain_queries(guarded: Guarded):
    checks = [SqlCheck(f"ok {i}", query, rows=1) for i, query in enumerate(CATALOG_ACCEPTED)]
    with contextlib.closing(guarded.database.connect("ye-run tests", autocommit=True)) as conn:
        assert readonly.precheck(conn, checks) == []
        with conn.cursor() as cur:
            cur.execute("select count(*) from pg_prepared_statements")
            assert cur.fetchone() == (0,)
    assert fingerprint(guarded.database) == guarded.before


def test_a_run_with_a_refused_check_exits_2_before_seeding(guarded: Guarded, bystander, tmp_path: Path):
    path = write_scenario(tmp_path, [
        f"select pg_terminate_backend(pid) from pg_stat_activity where application_name = '{BYSTANDER}'",
        "select pg_advisory_lock(4242)",
        "select count(*) from jobs_variants where job_id = :job_id",
        "select idd from jobs where job_id = :job_id",
        "select 1 === 2",
    ])
    result = CliRunner().invoke(cli, ["run", str(path), "--database-url", url(guarded.database)])
    assert result.exit_code == 2, result.output
    output = result.output
    assert f"{path}:6:22: $.expect.sql[0].query: sql check 'check 0': calls pg_terminate_backend()" in output
    assert f"{path}:9:22: $.expect.sql[1].query: sql check 'check 1': calls pg_advisory_lock()" in output
    assert "$.expect.sql[2]" not in output
    assert f"{path}:15:22: $.expect.sql[3].query: sql check 'check 3': column \"idd\" does not exist" in output
    assert f"{path}:18:24: $.expect.sql[4].query: sql check 'check 4': uses operator ===" in output
    assert fingerprint(guarded.database) == guarded.before


def test_a_run_with_plain_checks_passes_and_the_checks_run_on_their_own_read_only_session(
        database_with, tmp_path: Path):
    database = database_with(CANARY)
    before = fingerprint(database)
    text = """name: plain checks
simulate_img_gen: true
timeouts: {step: 30s, stall: 30s, job: 60s}
expect:
  sql:
    - {name: variants, query: "select count(*) from jobs_variants where job_id = :job_id", equals: 3}
    - {name: literal, query: "select ':job_id' || '%'", equals: ":job_id%"}
    - {name: tenant, query: "select :tenant_id = tenant_id from jobs where job_id = :job_id::uuid", equals: true}
    - {name: cte, query: "with v as (select * from jobs_variants where job_id = :job_id) select count(*) from v",
       equals: 3}
    - {name: window, query: "select max(r) from (select row_number() over (order by creation_order) r
       from jobs_variants where job_id = :job_id) s", equals: 3}
    - {name: values, query: "values (1), (2)", rows: 2}
    - {name: table, query: "table canary", rows: 5}
    - {name: clocks, query: "select now() <= clock_timestamp() and random() < 1", equals: true}
    - {name: own session, query: "select current_setting('application_name')", equals: "ye-run checks"}
    - {name: read only, query: "select current_setting('default_transaction_read_only')", equals: "on"}
    - {name: in a read-only transaction, query: "select current_setting('transaction_read_only')", equals: "on"}
    - {name: timeouts, query: "select current_setting('statement_timeout') || ' ' || current_setting('lock_timeout')",
       equals: "30s 5s"}
"""
    outcome = run(database, tmp_path, text)
    assert outcome.result.outcome == "passed", [f.message for f in outcome.result.all_failures]
    after = fingerprint(database)
    assert after["public.canary"] == before["public.canary"] and after["canary_seq"] == before["canary_seq"]


# --- run time, with the parser bypassed ---------------------------------------------------


@pytest.fixture
def session(guarded: Guarded) -> Iterator[CheckSession]:
    checks = CheckSession(guarded.database)
    yield checks
    checks.close()


def test_the_session_cannot_write(guarded: Guarded, session: CheckSession):
    with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
        session.fetch("delete from canary")
    assert fingerprint(guarded.database) == guarded.before


def test_read_only_survives_a_commit(guarded: Guarded, session: CheckSession):
    with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction, match="cannot execute DELETE"):
        session.fetch("select 1; commit; delete from canary")
    assert session.fetch("commit; select current_setting('transaction_read_only')") == [("on",)]
    assert fingerprint(guarded.database) == guarded.before


def test_a_lock_taken_by_a_check_does_not_outlive_it(guarded: Guarded, session: CheckSession):
    pid = session.fetch("select pg_backend_pid()")
    assert session.fetch("select pg_advisory_lock(4242), 'locked'") == [("", "locked")]
    own = "select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()"
    assert session.fetch(own) == [(0,)]
    assert session.fetch("select pg_backend_pid()") == pid  # the same session, reset by DISCARD ALL
    assert fingerprint(guarded.database) == guarded.before


def test_no_session_state_outlives_a_check(session: CheckSession):
    session.fetch("prepare leftover as select 1")
    session.fetch("listen ye_run_leftover")
    assert session.fetch("select count(*) from pg_prepared_statements") == [(0,)]
    assert session.fetch("select count(*) from pg_listening_channels()") == [(0,)]
    settings = "select current_setting('default_transaction_read_only'), current_setting('statement_timeout'), " \
               "current_setting('lock_timeout'), current_setting('idle_in_transaction_session_timeout')"
    assert session.fetch(settings) == [("on", "30s", "5s", "1min")]


def test_a_check_waits_at_most_the_lock_timeout(guarded: Guarded, session: CheckSession):
    with contextlib.closing(guarded.database.connect("ye-run tests")) as locker:
        with locker.cursor() as cur:
            cur.execute("lock table canary in access exclusive mode")
        with pytest.raises(psycopg2.errors.LockNotAvailable):
            session.fetch("select count(*) from canary")
        locker.rollback()
    assert session.fetch("select count(*) from canary") == [(5,)]


def test_the_options_of_the_url_are_kept(guarded: Guarded):
    database = Database(guarded.database.url.update_query_dict({"options": "-c work_mem=5MB"}))
    checks = CheckSession(database)
    try:
        assert checks.fetch("select current_setting('work_mem'), current_setting('default_transaction_read_only')") \
            == [("5MB", "on")]
    finally:
        checks.close()


def test_the_bound_text_is_parsed_again(guarded: Guarded, session: CheckSession):
    params = {"job_id": str(uuid.uuid4()), "tenant_id": "x'; delete from canary; --"}
    with pytest.raises(Refused, match="found 4 statements"):
        session.run(SqlCheck("sneaky", "select 1; set default_transaction_read_only = off; commit; "
                                       "delete from canary"), params)
    with pytest.raises(Refused, match="found 3 statements"):
        session.run(SqlCheck("reproduced", "select $a$'$a$ ; commit; delete from canary --'"), params)
    with pytest.raises(Refused, match="found DELETE"):
        session.run(SqlCheck("sneaky", "delete from canary where note = :tenant_id"), params)
    assert session.run(SqlCheck("quoted", "select :tenant_id, '%'"), params) == [(params["tenant_id"], "%")]
    assert fingerprint(guarded.database) == guarded.before

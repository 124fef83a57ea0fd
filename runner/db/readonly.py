"""The catalog half of the SQL-check contract: what a query calls, and whether it compiles here.

`runner.sqlsafety` decides, without a database, that an SQL check is one plain query. Some
of what a query does only the catalog knows: a function named in it may write, lock, sleep,
signal other backends or read files. Before anything is seeded, every function the query
calls and every operator it uses is looked up, and the query is PREPAREd (not executed), so
a volatile function or a misspelt column is an authoring error with a location, not a
failure (or a side effect) halfway through a run. All of it happens in a READ ONLY
transaction that is rolled back.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

import psycopg2
import psycopg2.extensions

from runner import sqlsafety
from runner.errors import InputError, Problem, Unavailable
from runner.scenario.model import SqlCheck
from runner.scenario.measures import point_into
from runner.scenario.yamlsource import Mark

ALLOWED_VOLATILE = ("random", "clock_timestamp", "timeofday", "gen_random_uuid")
"""Volatile pg_catalog functions a check may call: they read a clock or a random source and change
nothing (the seed of `random` is per session, and the session is reset after every check). Only
the pg_catalog functions are allowed; a volatile function of the same name elsewhere is not."""
DENIED_STABLE = ("txid_current", "pg_current_xact_id")
"""Marked stable, yet assign a transaction id to a read-only query (and burn one per check)."""

STATEMENT = "ye_run_sql_check"
_UNDEFINED_TABLE = "42P01"
_RELATION = re.compile(r'relation "([^"]+)" does not exist')
_INDETERMINATE = "42P18"
_PARAMETER = re.compile(r"\$(\d+)")
_SETTINGS = "SET LOCAL statement_timeout = '30s'; SET LOCAL lock_timeout = '5s'"

_FUNCTIONS = """
SELECT DISTINCT p.oid::regprocedure::text
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE p.proname = %(name)s
  AND CASE WHEN %(schema)s::text IS NULL THEN n.nspname = ANY (current_schemas(true))
           ELSE n.nspname = %(schema)s END
  AND (p.provolatile NOT IN ('i', 's') OR p.proname = ANY (%(denied)s))
  AND NOT (n.nspname = 'pg_catalog' AND p.proname = ANY (%(allowed)s))
ORDER BY 1
"""

_OPERATORS = """
SELECT DISTINCT o.oid::regoperator::text, p.oid::regprocedure::text
FROM pg_operator o
JOIN pg_namespace n ON n.oid = o.oprnamespace
JOIN pg_proc p ON p.oid = o.oprcode
WHERE o.oprname = %(name)s
  AND CASE WHEN %(schema)s::text IS NULL THEN n.nspname = ANY (current_schemas(true))
           ELSE n.nspname = %(schema)s END
  AND (p.provolatile NOT IN ('i', 's') OR p.proname = ANY (%(denied)s))
ORDER BY 1, 2
"""


def precheck(conn: psycopg2.extensions.connection, checks: Sequence[SqlCheck]) -> list[str]:
    """Every problem the catalog finds with these checks, as `file:line:col: $.expect.sql[i].query: message`.

    Runs in a READ ONLY transaction that is rolled back (any open transaction is rolled back first).
    """
    return [line for line, _ in _located_problems(conn, checks)]


def require_read_only(conn: psycopg2.extensions.connection, checks: Sequence[SqlCheck]) -> None:
    """InputError (exit 2) listing every problem `precheck` finds, one per line; Unavailable when the only
    problems are tables this database does not have (with nothing like them: not a typo)."""
    problems = _located_problems(conn, checks)
    if any(not lacking for _, lacking in problems):
        raise InputError("\n".join(line for line, _ in problems))
    if problems:
        raise Unavailable("the database lacks what its SQL checks read: " + "; ".join(line for line, _ in problems))


def _located_problems(conn: psycopg2.extensions.connection, checks: Sequence[SqlCheck]) -> list[tuple[str, bool]]:
    problems = []
    for index, check in enumerate(checks):
        for message, position, lacking in _problems(conn, check):
            problems.append((_located(index, check, f"sql check {check.name!r}: {message}", position), lacking))
    return problems


def _problems(conn: psycopg2.extensions.connection, check: SqlCheck) -> list[tuple[str, int | None, bool]]:
    """(message, position, whether it is only a table the database lacks) for each problem."""
    analysis = sqlsafety.analyze(check.query)
    if not analysis.ok:  # validation refuses these; a check built by hand may still hold one
        return [(refusal.message, refusal.position, False) for refusal in analysis.problems]
    _begin(conn)
    try:
        with conn.cursor() as cur:
            cur.execute(_SETTINGS)
            found = [(message, position, False) for message, position in _volatile(cur, analysis)]
            problem = _prepare(cur, analysis)
    finally:
        _end(conn)
    return found + ([problem] if problem else [])


def _begin(conn: psycopg2.extensions.connection) -> None:
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("BEGIN READ ONLY" if conn.autocommit else "SET TRANSACTION READ ONLY")


def _end(conn: psycopg2.extensions.connection) -> None:
    if conn.autocommit:  # psycopg2 does not know of the transaction BEGIN opened
        with conn.cursor() as cur:
            cur.execute("ROLLBACK")
    else:
        conn.rollback()


def _volatile(cur: psycopg2.extensions.cursor, analysis: sqlsafety.Analysis) -> list[tuple[str, int | None]]:
    """Functions and operators that may change something (a `volatile` overload is enough)."""
    found = []
    for function in _unique(analysis.functions):
        cur.execute(_FUNCTIONS, _lookup(function))
        overloads = [row[0] for row in cur.fetchall()]
        if overloads:
            found.append((_function_message(function, overloads), function.position))
    for operator in _unique(analysis.operators):
        cur.execute(_OPERATORS, _lookup(operator))
        rows = cur.fetchall()
        if rows:
            implementations = ", ".join(f"{op} by {proc}" for op, proc in rows)
            found.append((f"uses operator {operator}, implemented by a volatile function ({implementations}); "
                          "an SQL check may use only operators backed by immutable or stable functions",
                          operator.position))
    return found


def _function_message(function: sqlsafety.Name, overloads: list[str]) -> str:
    if function.name in DENIED_STABLE:
        why = "assigns a transaction id"
    else:
        why = f"is volatile ({', '.join(overloads)}): it may change state"
    return (f"calls {function}(), which {why}; an SQL check may call only immutable or stable functions "
            f"(or {', '.join(ALLOWED_VOLATILE)})")


def _lookup(name: sqlsafety.Name) -> dict[str, object]:
    return {"name": name.name, "schema": name.schema, "allowed": list(ALLOWED_VOLATILE),
            "denied": list(DENIED_STABLE)}


def _unique(names: Sequence[sqlsafety.Name]) -> list[sqlsafety.Name]:
    seen: dict[tuple[str, ...], sqlsafety.Name] = {}
    for name in names:
        seen.setdefault(name.parts, name)
    return list(seen.values())


def _prepare(cur: psycopg2.extensions.cursor, analysis: sqlsafety.Analysis) -> tuple[str, int | None, bool] | None:
    """PREPARE (parse and analyse, never run) the query, then DEALLOCATE it; the error if it does not compile.

    A parameter PostgreSQL cannot type from its context (`select :tenant_id`) is declared `text`,
    which is what the quoted literal bound at run time becomes.
    """
    types: dict[int, str] = {}
    while True:
        declared = [types.get(n, "unknown") for n in range(1, len(analysis.params) + 1)]
        head = f"PREPARE {STATEMENT}{'(' + ', '.join(declared) + ')' if declared else ''} AS "
        cur.execute("SAVEPOINT ye_run_prepare")
        try:
            cur.execute(head + analysis.parse_text)
        except psycopg2.Error as exc:
            cur.execute("ROLLBACK TO SAVEPOINT ye_run_prepare")
            message = (exc.diag.message_primary or str(exc)).strip()
            number = _PARAMETER.search(message)
            if exc.pgcode == _INDETERMINATE and number and int(number.group(1)) not in types:
                types[int(number.group(1))] = "text"
                continue
            position = exc.diag.statement_position
            where = int(position) - 1 - len(head) if position else None
            lacking = exc.pgcode == _UNDEFINED_TABLE and not _like_a_table(cur, message)
            return message, analysis.original(where) if where is not None and where >= 0 else None, lacking
        cur.execute(f"DEALLOCATE {STATEMENT}")
        return None


def _like_a_table(cur: psycopg2.extensions.cursor, message: str) -> bool:
    """Whether the missing relation looks like a misspelling of one that exists (then it is the author's)."""
    named = _RELATION.search(message)
    if named is None:
        return True
    cur.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') AND n.nspname = ANY (current_schemas(false))")
    tables = [row[0] for row in cur.fetchall()]
    return bool(difflib.get_close_matches(named.group(1).rsplit(".", 1)[-1], tables, n=1))


def _located(index: int, check: SqlCheck, message: str, position: int | None) -> str:
    origin = check.origin
    if origin is None:
        where = f" (at character {position + 1})" if position is not None else ""
        return f"$.expect.sql[{index}].query: {message}{where}"
    mark, where = point_into(Mark(origin.file, origin.line, origin.col), check.query, position)
    return str(Problem(mark.file, mark.line, mark.col, f"$.expect.sql[{index}].query", message + where))

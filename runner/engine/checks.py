"""Checks made once per job, when its variants have finished: what the rows say.

The job row's state, the variant count and the one shared image asset, and the scenario's
SQL checks. Validation (`runner.sqlsafety`) and the catalog precheck (`runner.db.readonly`)
already refused anything but one plain read-only query; here, as defence in depth, user SQL
runs on a connection of its own whose every transaction is read-only by default, with
statement and lock timeouts, as BEGIN READ ONLY / query / ROLLBACK, then DISCARD ALL, so no
lock, setting or prepared statement outlives a check. The text sent is the bound query,
parsed once more: it is still one plain query.
"""

from __future__ import annotations

import contextlib

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import psycopg2
import psycopg2.extensions

from runner import sqlsafety
from runner.db import failures, readonly
from runner.db.connect import Database, autocommitted, connect_args
from runner.engine import messages
from runner.engine.results import JobResult
from runner.outcomes import FailureKind
from runner.trace import Failure
from runner.scenario.model import Scenario, SqlCheck

SESSION_OPTIONS = ("-c default_transaction_read_only=on -c statement_timeout=30s -c lock_timeout=5s "
                   "-c idle_in_transaction_session_timeout=60s")
"""Startup settings of the checks' connection: `RESET ALL` (in DISCARD ALL) returns to these, not below."""


_ROWS = """
SELECT j.current_step, j.status,
       (SELECT count(*) FROM jobs_variants v WHERE v.job_id = j.job_id),
       (SELECT count(DISTINCT img_asset_id) FROM jobs_variants v WHERE v.job_id = j.job_id),
       (SELECT count(img_asset_id) FROM jobs_variants v WHERE v.job_id = j.job_id),
       (SELECT min(img_asset_id::text) FROM jobs_variants v WHERE v.job_id = j.job_id),
       ARRAY(SELECT img_asset_id::text FROM job_inputs i WHERE i.job_id = j.job_id)
FROM jobs j WHERE j.job_id = %s
"""


@dataclass(frozen=True, slots=True)
class JobRows:
    """What the rows of one job say, read in one round trip."""

    state: tuple[str, str] | None
    variants: int = 0
    distinct_assets: int = 0
    with_asset: int = 0
    asset: str | None = None
    input_assets: tuple[str, ...] = ()


def job_rows(conn: psycopg2.extensions.connection, job_id: str) -> JobRows:
    with autocommitted(conn), conn.cursor() as cur:  # one read: no BEGIN, no ROLLBACK
        cur.execute(_ROWS, (job_id,))
        row = cur.fetchone()
    conn.rollback()
    if row is None:
        return JobRows(None)
    return JobRows((row[0], row[1]), row[2], row[3], row[4], row[5], tuple(row[6]))


def integrity(rows: JobRows, scenario: Scenario, job: JobResult) -> list[Failure]:
    """N variants, all sharing the seeded image asset, as does the job input."""
    count, distinct, with_asset, asset, inputs = (rows.variants, rows.distinct_assets, rows.with_asset, rows.asset,
                                                  list(rows.input_assets))
    out = []
    if count != scenario.variants:
        out.append(_job(scenario, job, FailureKind.VARIANT_COUNT,
                        f"has {count} variant row(s); expected {scenario.variants}"))
    if distinct != 1 or with_asset != count or asset != job.seeded.asset_id or inputs != [job.seeded.asset_id]:
        out.append(_job(scenario, job, FailureKind.SHARED_ASSET,
                        f"variants do not share the seeded image asset {job.seeded.asset_id}: {distinct} distinct "
                        f"img_asset_id value(s), {count - with_asset} variant(s) without one, job_inputs has {inputs}"))
    return out


class Refused(Exception):
    """The bound text of a check is not one plain read-only query (validation should have said so)."""


class CheckSession:
    """The connection SQL checks run on: never the seeding one; opened on first use, closed by the run."""

    def __init__(self, database: Database, cursor_factory: type | None = None):
        self.database = database
        self.cursor_factory = cursor_factory
        self._conn: psycopg2.extensions.connection | None = None

    def precheck(self, sql: Sequence[SqlCheck]) -> None:
        """Before anything is seeded: InputError if the catalog says a check may write or does not compile."""
        readonly.require_read_only(self._connection(), sql)

    def run(self, check: SqlCheck, params: dict[str, str]) -> list[tuple]:
        """The rows of one check, its parameters bound; Refused if the bound text is not one plain query."""
        return self.fetch(self.bind(check.query, params))

    def bind(self, query: str, params: dict[str, str]) -> str:
        """The exact text to send: the query with its parameters as quoted literals, parsed again."""
        analysis = sqlsafety.analyze(query)
        unknown = [name for name in analysis.params if name not in params]
        if not analysis.ok or unknown:
            raise Refused(analysis.problems[0].message if analysis.problems else f"unknown parameter :{unknown[0]}")
        conn = self._connection()
        with conn.cursor() as cur:
            text = cur.mogrify(analysis.exec_text, params)
        bound = text.decode(psycopg2.extensions.encodings[conn.encoding])
        again = sqlsafety.analyze(bound)
        if not again.ok or again.params:
            raise Refused(again.problems[0].message if again.problems else "the bound query still has parameters")
        return bound

    def fetch(self, sql: str) -> list[tuple]:
        """`sql` as BEGIN READ ONLY / sql / ROLLBACK, then DISCARD ALL; no validation of its own."""
        conn = self._connection()
        with conn.cursor() as cur:
            cur.execute("BEGIN READ ONLY")
            try:
                cur.execute(sql)
                return cur.fetchall() if cur.description else []
            finally:
                cur.execute("ROLLBACK")
                cur.execute("DISCARD ALL")

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg2.Error):
                self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg2.extensions.connection:
        if self._conn is None or self._conn.closed:
            extra = {"cursor_factory": self.cursor_factory} if self.cursor_factory else {}
            self._conn = self.database.connect("ye-run checks", autocommit=True, options=self._options(), **extra)
        return self._conn

    def _options(self) -> str:
        own = connect_args(self.database.url).get("options")
        return f"{own} {SESSION_OPTIONS}" if own else SESSION_OPTIONS


def sql_checks(session: CheckSession, scenario: Scenario, job: JobResult) -> list[Failure]:
    """The failures of the scenario's SQL checks for one finished job, each placed at the check it broke."""
    params = {"job_id": job.job_id, "tenant_id": job.seeded.tenant_id}
    found = ((index, _run(session, scenario, job, check, params)) for index, check in enumerate(scenario.expect.sql))
    return [replace(failure, expectation=f"$.expect.sql[{index}]") for index, failure in found if failure is not None]


def _run(session: CheckSession, scenario: Scenario, job: JobResult, check: SqlCheck,
         params: dict[str, str]) -> Failure | None:
    kind = FailureKind.SQL_CHECK
    try:
        rows = session.run(check, params)
    except Refused as exc:
        return _job(scenario, job, kind, f"sql check {check.name!r} was refused: {exc}")
    except psycopg2.Error as exc:
        if failures.lost(exc):  # the database went away: not the check's verdict
            session.close()
            raise failures.describe(exc, f"running sql check {check.name!r}") from None
        reason = (getattr(exc.diag, "message_primary", None) or str(exc)).strip()
        return _job(scenario, job, kind, f"sql check {check.name!r} could not run: {reason}")
    if check.value is None:
        if len(rows) != check.rows:
            return _job(scenario, job, kind, f"sql check {check.name!r}: expected {check.rows} row(s), "
                        f"got {len(rows)}", detail=_show(rows))
        return None
    if len(rows) != 1:
        return _job(scenario, job, kind, f"sql check {check.name!r}: expected one row with a value "
                    f"{check.value.describe()}, got {len(rows)} rows", detail=_show(rows))
    actual = rows[0][0] if rows[0] else None
    if not check.value.holds(actual):
        return _job(scenario, job, kind, f"sql check {check.name!r}: {check.value.failure(actual)}",
                    detail=_hint(check, actual))
    return None


def _hint(check: SqlCheck, actual: Any) -> str:
    """A comparison written in SQL fails with only 'false': say how to see the value it compared."""
    if isinstance(actual, bool) and isinstance(check.equals, bool):
        return ("  hint: select the value itself and test it with at_least, at_most, greater_than, less_than, "
                "between, approx or matches: the failure then shows it")
    return ""


def _show(rows: list[tuple]) -> str:
    shown = "\n".join(f"    {row}" for row in rows[:5])
    more = f"\n    ... {len(rows) - 5} more" if len(rows) > 5 else ""
    return f"  rows:\n{shown}{more}" if rows else ""


def _job(scenario: Scenario, job: JobResult, kind: FailureKind, what: str, detail: str = "") -> Failure:
    return messages.job_failure(scenario.name, job.ordinal, job.job_id, kind, what, detail)

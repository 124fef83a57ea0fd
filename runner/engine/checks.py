"""Checks made once per job, when its variants have finished: what the rows say.

The job row's state, the variant count and the one shared image asset, and the scenario's
SQL checks. User SQL runs in a READ ONLY transaction with a statement timeout and bound
parameters, so a check can read anything and change nothing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg2
import psycopg2.extensions

from runner import sqlparams
from runner.engine import messages
from runner.engine.results import JobResult
from runner.engine.trace import Failure
from runner.scenario.model import Scenario, SqlCheck

SQL_CHECK_TIMEOUT = "30s"


def job_state(conn: psycopg2.extensions.connection, job_id: str) -> tuple[str, str] | None:
    with conn.cursor() as cur:
        cur.execute("SELECT current_step, status FROM jobs WHERE job_id = %s", (job_id,))
        row = cur.fetchone()
    conn.rollback()
    return (row[0], row[1]) if row else None


def integrity(conn: psycopg2.extensions.connection, scenario: Scenario, job: JobResult) -> list[Failure]:
    """N variants, all sharing the seeded image asset, as does the job input."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), count(DISTINCT img_asset_id), min(img_asset_id::text) FROM jobs_variants "
                    "WHERE job_id = %s", (job.job_id,))
        count, distinct, asset = cur.fetchone()
        cur.execute("SELECT img_asset_id::text FROM job_inputs WHERE job_id = %s", (job.job_id,))
        inputs = [row[0] for row in cur.fetchall()]
    conn.rollback()
    out = []
    if count != scenario.variants:
        out.append(_job(scenario, job, "variant_count", f"has {count} variant row(s); expected {scenario.variants}"))
    if distinct != 1 or asset != job.seeded.asset_id or inputs != [job.seeded.asset_id]:
        out.append(_job(scenario, job, "shared_asset",
                        f"variants do not share the seeded image asset {job.seeded.asset_id}: {distinct} distinct "
                        f"img_asset_id value(s) among variants, job_inputs has {inputs}"))
    return out


def sql_checks(conn: psycopg2.extensions.connection, scenario: Scenario, job: JobResult) -> list[Failure]:
    params = {"job_id": job.job_id, "tenant_id": job.seeded.tenant_id}
    return [f for check in scenario.expect.sql if (f := _run(conn, scenario, job, check, params)) is not None]


def _run(conn: psycopg2.extensions.connection, scenario: Scenario, job: JobResult, check: SqlCheck,
         params: dict[str, str]) -> Failure | None:
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            cur.execute(f"SET LOCAL statement_timeout = '{SQL_CHECK_TIMEOUT}'")
            cur.execute(sqlparams.to_pyformat(check.query), params)
            rows = cur.fetchall() if cur.description else []
    except psycopg2.Error as exc:
        conn.rollback()
        reason = (exc.diag.message_primary or str(exc)).strip()
        return _job(scenario, job, "sql_check", f"sql check {check.name!r} could not run: {reason}")
    conn.rollback()
    if not check.compare_value:
        if len(rows) != check.rows:
            return _job(scenario, job, "sql_check", f"sql check {check.name!r}: expected {check.rows} row(s), "
                        f"got {len(rows)}", detail=_show(rows))
        return None
    if len(rows) != 1:
        return _job(scenario, job, "sql_check", f"sql check {check.name!r}: expected one row to compare with "
                    f"{check.equals!r}, got {len(rows)}", detail=_show(rows))
    actual = rows[0][0] if rows[0] else None
    if not _equal(actual, check.equals):
        return _job(scenario, job, "sql_check", f"sql check {check.name!r}: expected {check.equals!r}, got {actual!r}")
    return None


def _equal(actual: Any, expected: Any) -> bool:
    if actual is None or expected is None:
        return actual is None and expected is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected or str(actual).lower() == str(expected).lower()
    if isinstance(actual, (int, float, Decimal)) and isinstance(expected, (int, float)):
        return Decimal(str(actual)) == Decimal(str(expected))
    return str(actual) == str(expected)


def _show(rows: list[tuple]) -> str:
    shown = "\n".join(f"    {row}" for row in rows[:5])
    more = f"\n    ... {len(rows) - 5} more" if len(rows) > 5 else ""
    return f"  rows:\n{shown}{more}" if rows else ""


def _job(scenario: Scenario, job: JobResult, kind: str, what: str, detail: str = "") -> Failure:
    return messages.job_failure(scenario.name, job.ordinal, job.job_id, kind, what, detail)

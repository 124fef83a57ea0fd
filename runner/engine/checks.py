"""Checks made once per job, when its variants have finished: what the rows say.

The job row's state, the variant count and the one shared image asset, and the scenario's
SQL checks. User SQL runs in a READ ONLY transaction with a statement timeout and bound
parameters, so a check can read anything and change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg2
import psycopg2.extensions

from runner import sqlparams
from runner.engine import messages
from runner.engine.results import JobResult
from runner.trace import Failure
from runner.scenario.model import Scenario, SqlCheck

SQL_CHECK_TIMEOUT = "30s"


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
    with conn.cursor() as cur:
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
        out.append(_job(scenario, job, "variant_count", f"has {count} variant row(s); expected {scenario.variants}"))
    if distinct != 1 or with_asset != count or asset != job.seeded.asset_id or inputs != [job.seeded.asset_id]:
        out.append(_job(scenario, job, "shared_asset",
                        f"variants do not share the seeded image asset {job.seeded.asset_id}: {distinct} distinct "
                        f"img_asset_id value(s), {count - with_asset} variant(s) without one, job_inputs has {inputs}"))
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

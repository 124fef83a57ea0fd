"""How the reference pipeline writes a row: SQL built once from the catalog, every claim a compare-and-set.

A late notification, a sweep racing a notification, or a resumed task never moves a row twice:
the first write of a step is conditional on the state the task expects, and a fault's extra
writes land in the same transaction.
"""

from __future__ import annotations

import dataclasses

import psycopg2.extensions
from psycopg2 import sql

from runner.db import catalog as catalog_module
from runner.errors import SchemaMissingError
from runner.pipeline import faults, jobwork
from runner.pipeline.config import PipelineConfig
from runner.pipeline.tasks import ROWS, Task

Write = tuple[str, str, bool]
"""(step, status, whether it bumps retry_count)."""


class RowWriter:
    def __init__(self, catalog: catalog_module.Catalog, conn: psycopg2.extensions.connection,
                 config: PipelineConfig):
        self.config = config
        self.sql: dict[tuple[str, str], str] = {}
        for level, (name, key) in ROWS.items():
            self._build(catalog, conn, level, name, key)
        self.work = jobwork.JobWork(catalog)
        self.sql[("v", "evaluate")] = (
            "INSERT INTO variant_evaluations (job_variants_id, step, score) VALUES (%s, %s, %s)"
            if catalog.has("variant_evaluations", "score") else "")

    def _build(self, catalog: catalog_module.Catalog, conn: psycopg2.extensions.connection, level: str, name: str,
               key: str) -> None:
        table = catalog.table(name)
        if table is None or not table.has(key):
            raise SchemaMissingError(f"the database has no {name} table for the pipeline to drive")
        sets = [sql.SQL("current_step = %s"), sql.SQL("status = %s")]
        if table.has("updated_at"):
            sets.append(sql.SQL("updated_at = clock_timestamp()"))
        retry = sets + ([sql.SQL("retry_count = retry_count + 1")] if table.has("retry_count") else [])
        base = sql.SQL("UPDATE {} SET {} WHERE {} = %s").format
        self.sql[(level, "write")] = base(sql.Identifier(name), sql.SQL(", ").join(sets),
                                          sql.Identifier(key)).as_string(conn)
        self.sql[(level, "retry")] = base(sql.Identifier(name), sql.SQL(", ").join(retry),
                                          sql.Identifier(key)).as_string(conn)
        self.sql[(level, "claim")] = self.sql[(level, "write")] + " AND current_step = %s AND status = %s"

    def claim(self, conn: psycopg2.extensions.connection, task: Task, step: str, status: str) -> bool:
        """(step, status) if the row is still where the task expects it; committed."""
        with conn.cursor() as cur:
            cur.execute(self.sql[(task.level, "claim")], (step, status, task.row_id, *task.expect))
            claimed = cur.rowcount == 1
        conn.commit()
        return claimed

    def commit(self, conn: psycopg2.extensions.connection, task: Task, writes: list[Write],
               expect: tuple[str, str] | None = None, evaluate: bool = False, work: bool = False) -> bool:
        """Several writes of one row in one transaction (a fault's extra writes land atomically).

        With `expect`, the first write is a compare-and-set on it (a step that writes only `done`
        claims the row that way); False, and nothing written, when another task moved it first.
        With `work`, a job-level step's reads and writes go in the same transaction; False, and nothing
        written, when it cannot run (the job has no ad copy).
        """
        with conn.cursor() as cur:
            for index, (step, status, bump) in enumerate(writes):
                if index == 0 and expect is not None:
                    cur.execute(self.sql[(task.level, "claim")], (step, status, task.row_id, *expect))
                    if cur.rowcount != 1:
                        conn.rollback()
                        return False
                    continue
                cur.execute(self.sql[(task.level, "retry" if bump else "write")], (step, status, task.row_id))
            if evaluate and self.sql[("v", "evaluate")]:
                score = faults.rng(self.config, task.info, writes[0][0], 0, "score").random()
                cur.execute(self.sql[("v", "evaluate")], (task.row_id, writes[0][0], round(score, 4)))
            if work and task.level == "j" and not self.work.run(cur, writes[0][0], task.row_id):
                conn.rollback()
                return False
        conn.commit()
        return True

    @staticmethod
    def reread(conn: psycopg2.extensions.connection, task: Task) -> Task | None:
        """After a lost connection: where the row really is decides (the claim may have committed, or not)."""
        table, key = ROWS[task.level]
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT current_step, status FROM {} WHERE {} = %s").format(
                sql.Identifier(table), sql.Identifier(key)), (task.row_id,))
            row = cur.fetchone()
        conn.rollback()
        state = tuple(row) if row else None
        if state == task.expect:
            return dataclasses.replace(task, recheck=False)
        if state is not None and state[0] == task.step and state[1] in ("running", "queued"):
            return dataclasses.replace(task, expect=state, resumed=True, recheck=False)
        return None  # moved on (or gone): another task or worker has it

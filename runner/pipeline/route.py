"""Which step the reference pipeline runs after which, and where rows wait to be moved on."""

from __future__ import annotations

import psycopg2.extensions
from psycopg2 import sql

from runner.definition import Definition
from runner.pipeline.config import PipelineConfig
from runner.pipeline.scope import Scope


class Route:
    def __init__(self, definition: Definition, config: PipelineConfig):
        self.definition = definition
        self.config = config

    def next(self, step: str, level: str = "v") -> str | None:
        """The step this worker runs after `step` on a row of `level`, or None (end, stop_after, not its part)."""
        definition = self.definition
        if not definition.has(step):
            return None
        if self.config.stop_after and definition.index(step) >= definition.index(self.config.stop_after):
            return None
        if level == "v":
            following = definition.next_step(step) if definition.level(step) == "variant" else None
            return following if following is not None and definition.level(following) == "variant" \
                and self.runs(following) else None
        if step != definition.last_variant_step and definition.level(step) != "job":
            return None
        return definition.next_step(step)

    def runs(self, step: str) -> bool:
        """Whether this worker runs `step`: the simulated step belongs to the YE part (or the runner)."""
        definition = self.definition
        if not definition.has(step) or step == definition.seed:
            return False
        return not definition.step(step).simulated or self.config.with_ye


_SCANS = {
    "v": ("SELECT v.job_variants_id::text, v.job_id::text, v.current_step, v.status FROM jobs_variants v "
          "WHERE {} AND {} ORDER BY v.job_id, v.creation_order"),
    "j": "SELECT j.job_id::text, j.current_step, j.status FROM jobs j WHERE {} AND {} ORDER BY j.job_id",
}
"""Per level, the rows a scan returns: (variant id, job id, step, status), or (job id, step, status)."""


def scan(conn: psycopg2.extensions.connection, scope: Scope, condition: str, params: list,
         level: str = "v") -> list[tuple]:
    """Rows of `level` in scope matching `condition` (written against alias `v` or `j`), in a stable order."""
    where, scope_params = scope.where("v") if level == "v" else scope.where_job("j")
    query = sql.SQL(_SCANS[level]).format(sql.SQL(condition), where)
    with conn.cursor() as cur:
        cur.execute(query, params + scope_params)
        return cur.fetchall()

"""A test rig: seed jobs, run a worker scoped to them, write img_gen like the YE part, read traces."""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import Callable
from pathlib import Path

from runner.definition import DEFAULT
from runner.db.connect import Database
from runner.db.registry import SeededJob
from runner.pipeline import config as pipeline_config
from runner.pipeline.scope import Scope
from tests.db.helpers import load, rows, seeding

DONE = ("instagram_feed_gen", "done")
"""Where a job row ends when the whole pipeline ran: its last job-level step, done."""
WAIT = 60.0
"""Upper bound for a condition to hold; waits return as soon as it does (woken by NOTIFY)."""


def full_trace(start: str = "user_img_input", until: str = "iou_eval") -> list[tuple[str, str]]:
    """The (step, status) sequence of a variant that walks every step normally."""
    trace = [(start, "done")]
    for step in DEFAULT.steps_after(start):
        if DEFAULT.level(step) == "job":
            break
        trace += [(step, "running"), (step, "done")]
        if step == until:
            break
    return trace


class Rig:
    def __init__(self, database: Database, tmp_path: Path, stack: contextlib.ExitStack, variants: int = 3,
                 jobs: int = 1, start: str = "user_img_input"):
        self.database = database
        scenario = load(tmp_path, f"name: rig\nvariants: {variants}\nstart: {start}\n")
        self.seeding = seeding(database, scenario, tmp_path, stack=stack)
        self.jobs: list[SeededJob] = [self.seeding.seeder.seed_job(i + 1) for i in range(jobs)]
        self.scope = Scope(job_ids={j.job_id for j in self.jobs})
        self.conn = stack.enter_context(contextlib.closing(database.connect("rig")))
        self.listen = stack.enter_context(contextlib.closing(database.connect("rig listen", autocommit=True)))
        with self.listen.cursor() as cur:
            cur.execute("LISTEN job_variant_state_changed; LISTEN job_state_changed")

    def config(self, **doc) -> pipeline_config.PipelineConfig:
        return pipeline_config.build({"sweep": "200ms", "ye_poll": "50ms", **doc})

    def img_gen(self, job: SeededJob | None = None) -> None:
        """The original tool's documented SQL: (img_gen, running), then (img_gen, done)."""
        for seeded in [job] if job else self.jobs:
            for status in ("running", "done"):
                with self.conn.cursor() as cur:
                    cur.execute("UPDATE jobs_variants SET current_step = 'img_gen', status = %s, "
                                "updated_at = clock_timestamp() WHERE job_id = %s", (status, seeded.job_id))
                self.conn.commit()

    def trace(self, variant_id: str) -> list[tuple[str, str]]:
        return rows(self.conn, "SELECT current_step, status FROM ye_run_history WHERE kind = 'v' AND row_id = %s "
                               "ORDER BY id", (variant_id,))

    def job_trace(self, job: SeededJob | None = None) -> list[tuple[str, str]]:
        job = job or self.jobs[0]
        return rows(self.conn, "SELECT current_step, status FROM ye_run_history WHERE kind = 'j' AND row_id = %s "
                               "ORDER BY id", (job.job_id,))

    def traces(self, job: SeededJob | None = None) -> dict[int, list[tuple[str, str]]]:
        job = job or self.jobs[0]
        return {v.creation_order: self.trace(v.id) for v in job.variants}

    def job_state(self, job: SeededJob | None = None) -> tuple[str, str]:
        job = job or self.jobs[0]
        return rows(self.conn, "SELECT current_step, status FROM jobs WHERE job_id = %s", (job.job_id,))[0]

    def wait_until(self, condition: Callable[[], bool], timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            assert remaining > 0, "condition not reached in time"
            if select.select([self.listen], [], [], min(remaining, 0.2))[0]:
                self.listen.poll()
                self.listen.notifies.clear()

    def job_reaches(self, state: tuple[str, str], job: SeededJob | None = None) -> None:
        self.wait_until(lambda: self.job_state(job) == state)

"""The runner writing img_gen (the definition's simulated step) itself, per variant, as the
original tool documented.

`(img_gen, running)`, then after the scenario's delay `(img_gen, done)` — or `(img_gen,
failed)` for the variants the scenario names — exactly like a YE part would.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools

import psycopg2
import psycopg2.extensions

from runner.db import failures
from runner.db.catalog import Catalog
from runner.db.connect import autocommitted
from runner.db.registry import SeededJob
from runner.scenario.model import Simulation


class ImgGenSimulator:
    def __init__(self, conn: psycopg2.extensions.connection, catalog: Catalog, simulation: Simulation,
                 step: str = "img_gen", seed: str = "user_img_input"):
        self.conn = conn
        self.simulation = simulation
        self.step = step
        self.seed = seed
        stamp = ", updated_at = clock_timestamp()" if catalog.has("jobs_variants", "updated_at") else ""
        self._sql = (f"UPDATE jobs_variants SET current_step = %s, status = %s{stamp} "
                     "WHERE job_variants_id = ANY(%s::uuid[]) AND current_step = %s AND status = %s")
        """A compare-and-set on the state before: writes lost in doubt with the connection can be made again."""
        self._queue: list[tuple[float, int, list[tuple[str, list[str]]]]] = []
        self._order = itertools.count()

    def schedule(self, job: SeededJob, now: float) -> None:
        """Queue the writes; with no delay, running and done go in one commit (still two writes)."""
        failing = [v.id for v in job.variants if v.creation_order in self.simulation.fail_variants]
        passing = [v.id for v in job.variants if v.creation_order not in self.simulation.fail_variants]
        finish = [("done", passing), ("failed", failing)]
        start = [("running", [v.id for v in job.variants])]
        if self.simulation.delay > 0:
            self._push(now, start)
            self._push(now + self.simulation.delay, finish)
        else:
            self._push(now, start + finish)

    def _push(self, at: float, writes: list[tuple[str, list[str]]]) -> None:
        heapq.heappush(self._queue, (at, next(self._order), [(s, ids) for s, ids in writes if ids]))

    def next_time(self) -> float | None:
        return self._queue[0][0] if self._queue else None

    def run_due(self, now: float) -> None:
        """Write what is due. A write leaves the queue only once committed: after a lost connection the same
        writes are made again, and the compare-and-set skips the rows that had already moved."""
        while self._queue and self._queue[0][0] <= now:
            _, _, writes = self._queue[0]
            try:
                params: list = []
                for status, variant_ids in writes:
                    before = (self.seed, "done") if status == "running" else (self.step, "running")
                    params += [self.step, status, variant_ids, *before]
                with autocommitted(self.conn), self.conn.cursor() as cur:  # one message: one implicit transaction
                    if writes:
                        cur.execute("; ".join([self._sql] * len(writes)), params)
                self.conn.commit()
            except psycopg2.Error as exc:
                with contextlib.suppress(psycopg2.Error):
                    self.conn.rollback()
                raise failures.describe(exc, f"simulating {self.step}") from None
            heapq.heappop(self._queue)

    def cancel(self) -> None:
        self._queue.clear()

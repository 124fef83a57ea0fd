"""An application creating jobs the way the deployment's API does: plain INSERTs, no ye-run seeding."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg2.extensions

from runner.db.connect import Database
from runner.watch.judge import JobVerdict
from runner.watch.loop import Watch, WatchOptions

WAIT = 90.0
"""Upper bound for a condition; waits end as soon as it holds."""


@dataclass(frozen=True)
class AppJob:
    job_id: str
    variants: tuple[str, ...]


class App:
    def __init__(self, database: Database, tenant: str, stack: contextlib.ExitStack):
        self.database = database
        self.tenant = tenant
        self.conn = stack.enter_context(contextlib.closing(database.connect("test app")))
        self.sql("INSERT INTO tenants (tenant_id, name) VALUES (%s, 'watch test') ON CONFLICT DO NOTHING", (tenant,))

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            rows = cur.fetchall() if cur.description else []
        self.conn.commit()
        return rows

    def create_job(self, variants: int = 2) -> AppJob:
        """One job in one transaction: asset, job row, input, variants at (user_img_input, done), English copy."""
        with self.conn.cursor() as cur:
            cur.execute("INSERT INTO image_assets (image_type, image_url, tenant_id) VALUES ('input', "
                        "'s3://bucket/in.jpg', %s) RETURNING image_asset_id::text", (self.tenant,))
            asset = cur.fetchone()[0]
            cur.execute("INSERT INTO jobs (tenant_id, status, current_step) VALUES (%s, 'done', 'user_img_input') "
                        "RETURNING job_id::text", (self.tenant,))
            job_id = cur.fetchone()[0]
            cur.execute("INSERT INTO job_inputs (job_id, img_asset_id, desc_kor) VALUES (%s, %s, 'bread')",
                        (job_id, asset))
            ids = []
            for order in range(1, variants + 1):
                cur.execute("INSERT INTO jobs_variants (job_id, img_asset_id, creation_order, status, current_step) "
                            "VALUES (%s, %s, %s, 'done', 'user_img_input') RETURNING job_variants_id::text",
                            (job_id, asset, order))
                ids.append(cur.fetchone()[0])
            cur.execute("INSERT INTO txt_ad_copy_generations (job_id, generation_stage, ad_copy_eng, status) "
                        "VALUES (%s, 'ad_copy_eng', 'Fresh bread', 'done')", (job_id,))
        self.conn.commit()
        return AppJob(job_id, tuple(ids))

    def move(self, job: AppJob, states: list[tuple[str, str]], variants: tuple[int, ...] | None = None) -> None:
        """Write each state to the chosen variants (1-based; default all), one transaction per write."""
        for step, status in states:
            for order, variant_id in enumerate(job.variants, 1):
                if variants is None or order in variants:
                    self.sql("UPDATE jobs_variants SET current_step = %s, status = %s, updated_at = clock_timestamp() "
                             "WHERE job_variants_id = %s", (step, status, variant_id))

    def move_job(self, job: AppJob, states: list[tuple[str, str]]) -> None:
        for step, status in states:
            self.sql("UPDATE jobs SET current_step = %s, status = %s WHERE job_id = %s", (step, status, job.job_id))


class Watching:
    """A watch on its own thread, its verdicts collected; `until` waits for a condition on them."""

    def __init__(self, database: Database, stack: contextlib.ExitStack, **options):
        self.verdicts: list[JobVerdict] = []
        self._news = threading.Condition()
        self.watch = Watch(database, WatchOptions(**options), [self._take])
        self.totals = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        stack.callback(self.stop)
        assert self.watch.started.wait(30) or self.error is None, self.error
        assert self.watch.started.is_set(), f"the watch did not start: {self.error!r}"

    def _run(self) -> None:
        try:
            self.totals = self.watch.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc
        finally:
            with self._news:
                self._news.notify_all()

    def _take(self, verdict: JobVerdict) -> None:
        with self._news:
            self.verdicts.append(verdict)
            self._news.notify_all()

    def until(self, condition: Callable[[list[JobVerdict]], bool], timeout: float = WAIT) -> list[JobVerdict]:
        deadline = time.monotonic() + timeout
        with self._news:
            while not condition(self.verdicts):
                assert self.error is None, self.error
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"not reached in time; verdicts so far: {[(v.job_id, v.outcome) for v in self.verdicts]}"
                self._news.wait(min(remaining, 1.0))
            return list(self.verdicts)

    def judged(self, job_ids) -> Callable[[list[JobVerdict]], bool]:
        wanted = set(job_ids)
        return lambda verdicts: wanted <= {v.job_id for v in verdicts}

    def by_job(self) -> dict[str, JobVerdict]:
        return {v.job_id: v for v in self.verdicts}

    def stop(self):
        self.watch.stop.set()
        self.thread.join(30)
        return self.totals


def history_rows(conn: psycopg2.extensions.connection) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM ye_run_history")
        n = cur.fetchone()[0]
    conn.rollback()
    return n

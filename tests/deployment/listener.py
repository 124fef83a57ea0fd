"""A test listener that behaves like the deployment's (services/job_state_listener.py, pipeline_trigger.py).

It LISTENs on `job_variant_state_changed` and `job_state_changed` and, where the deployment calls a stage's
HTTP API, runs that stage's writes (`stages.py`) on a worker thread. What it reproduces, because a test
tool meets it:
- `(step, done)` (or `(step, queued)`) of a variant starts the next stage after re-reading the variant;
  `overlay` is not started without a text (Korean copy, else job_inputs.desc_kor), the evaluation stages
  not without the variant's overlay_layouts row.
- The job-level step `ad_copy_gen_kor` is started from two paths: the job row reaching `(iou_eval, done)`
  (job_state_changed), and the handler of the last variant's `(iou_eval, done)`, which finds the job row
  already done and starts it too. `duplicate_trigger=False` keeps the first path only (the fixed deployment).
- A job row `(step, running)` sends every variant behind that step on again, bumping its retry_count
  (`recover_lagging`); a done variant idle for `stale_after` seconds behind a sibling gets its retry_count
  bumped; every `recovery_period` seconds jobs left `(iou_eval, running)` with every variant done are set
  done (the deployment's 60-second task; off unless given).
Not reproduced: the retry of a failed job (these stages never fail) and the HTTP layer itself.
Run by hand: `python -m tests.deployment.listener --database-url URL [--no-duplicate-trigger]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import select
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.extensions

from runner.db.connect import Database, parse_url
from tests.deployment import reads, stages
from tests.deployment.stages import Call, Conn, Refused

log = logging.getLogger("ye_run.deployment_harness")
SCHEMA = Path(__file__).with_name("schema.sql")
VARIANT_CHANNEL, JOB_CHANNEL = "job_variant_state_changed", "job_state_changed"
SYNC_CHANNEL = "ye_harness_sync"
"""The harness's own channel: `wait_idle` sends itself a token on it."""
STEP_ORDER = {"img_gen": 0, **{s: i for i, s in enumerate(stages.VARIANT_STAGES, start=1)}}
NEXT = {"img_gen": "vlm_analyze", **dict(zip(stages.VARIANT_STAGES, stages.VARIANT_STAGES[1:]))}
JOB_NEXT = {"iou_eval": "ad_copy_gen_kor", "ad_copy_gen_kor": "instagram_feed_gen"}
NEEDS_OVERLAY = frozenset({"vlm_judge", "ocr_eval", "readability_eval", "iou_eval"})
Task = Callable[[Conn], None]


@dataclass(frozen=True, slots=True)
class Options:
    duplicate_trigger: bool = True
    """Start ad_copy_gen_kor from both paths, as the deployment does."""
    latency: float = 0.005
    """Seconds each stage spends on its "work"."""
    job_latency: float | None = None
    """Seconds the job-level stages (GPT calls in the deployment, slower than the others) spend; None: `latency`."""
    workers: int = 4
    """Stage calls in flight at once (the deployment's are unbounded)."""
    recovery_period: float | None = None
    """Seconds between sweeps for jobs left (iou_eval, running); None: no sweep (the deployment: 60)."""
    recover_lagging: bool = True
    stale_after: float = 300.0


@dataclass(frozen=True, slots=True)
class Refusal:
    """A stage call answered like an HTTP 4xx."""

    stage: str
    job_id: str
    variant_id: str | None
    reason: str


def install_schema(conn: Conn) -> None:
    """Create the deployment-like schema (idempotent) and commit."""
    with conn.cursor() as cur:
        cur.execute(SCHEMA.read_text(encoding="utf-8"))
    conn.commit()


class DeploymentListener:
    """The deployment's listener, in a thread: start(), wait_idle(), stop()."""

    def __init__(self, database: Database, options: Options = Options()):
        self.database = database
        self.options = options
        self.refusals: list[Refusal] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._copies: Counter[str] = Counter()
        self._copies_done: Counter[str] = Counter()
        """Per job, the ad_copy_gen_kor calls started and ended (the feed stage waits for them)."""
        self._in_flight = self._activity = self._token = self._seen = 0
        self._local = threading.local()
        self._conns: list[Conn] = []
        self._threads: list[threading.Thread] = []
        self._pool: ThreadPoolExecutor | None = None

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        """LISTEN first, then run: nothing committed after start() is missed."""
        self._listener = self._connect(autocommit=True)
        self._reader = self._connect(autocommit=True)
        self._sync = self._connect(autocommit=True)
        self._listen()
        self._pool = ThreadPoolExecutor(self.options.workers, thread_name_prefix="deployment-stage")
        self._spawn(self._dispatch, "deployment-listener")
        if self.options.recovery_period:
            self._spawn(self._recovery_timer, "deployment-recovery")

    def stop(self) -> None:
        """Stop listening, let the stage calls in flight finish, close every connection."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        if self._pool:
            self._pool.shutdown(wait=True, cancel_futures=True)
        for conn in self._conns:
            with contextlib.suppress(psycopg2.Error):
                conn.close()

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Return once everything committed before the call, and all it set off, has been handled."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                self._await(lambda: self._in_flight == 0, deadline)
                self._token += 1
                token, activity = self._token, self._activity
            with self._sync.cursor() as cur:
                cur.execute("SELECT pg_notify(%s, %s)", (SYNC_CHANNEL, str(token)))
            with self._cond:
                self._await(lambda: self._seen >= token, deadline)
                if self._activity == activity and self._in_flight == 0:
                    return

    def _await(self, predicate: Callable[[], bool], deadline: float) -> None:
        if not self._cond.wait_for(predicate, max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"the deployment listener is still busy ({self._in_flight} calls in flight)")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _connect(self, autocommit: bool = False) -> Conn:
        conn = self.database.connect("deployment-harness", autocommit=autocommit)
        self._conns.append(conn)
        return conn

    def _listen(self) -> None:
        with self._listener.cursor() as cur:
            for channel in (VARIANT_CHANNEL, JOB_CHANNEL, SYNC_CHANNEL):
                cur.execute(f"LISTEN {channel}")

    # --- the dispatcher ---------------------------------------------------------------------

    def _dispatch(self) -> None:
        while not self._stop.is_set():
            if not select.select([self._listener], [], [], 0.2)[0]:
                continue
            self._listener.poll()
            batch = list(self._listener.notifies)
            self._listener.notifies.clear()
            tasks: list[Task] = []
            for note in batch:
                tasks += self._handle(note)
            for task in tasks:  # after the whole batch: its handlers all read before any stage writes
                self._submit(task)

    def _handle(self, note: psycopg2.extensions.Notify) -> list[Task]:
        if note.channel == SYNC_CHANNEL:
            with self._cond:
                self._seen = max(self._seen, int(note.payload))
                self._cond.notify_all()
            return []
        with self._cond:
            self._activity += 1
        try:
            payload = json.loads(note.payload)
            if note.channel == VARIANT_CHANNEL:
                return self._on_variant(self._reader, payload)
            return self._on_job(self._reader, payload)
        except Exception as exc:  # the deployment logs a handler's error and goes on
            self._error(f"{note.channel} {note.payload}: {exc!r}")
            return []

    def _submit(self, task: Task) -> None:
        with self._cond:
            if self._stop.is_set() or self._pool is None:
                return
            self._in_flight += 1
            self._activity += 1
        self._pool.submit(self._run, task)

    def _run(self, task: Task) -> None:
        try:
            task(self._worker_conn())
        except Exception as exc:
            self._error(f"{getattr(task, '__name__', 'task')}: {exc!r}")
        finally:
            with self._cond:
                self._in_flight -= 1
                self._activity += 1
                self._cond.notify_all()

    def _worker_conn(self) -> Conn:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            with self._cond:
                conn = self._local.conn = self._connect()
        return conn

    def _error(self, text: str) -> None:
        log.error("%s", text)
        with self._cond:
            self.errors.append(text)

    # --- what a notification starts ------------------------------------------------------------

    def _on_variant(self, conn: Conn, v: dict) -> list[Task]:
        """trigger_next_pipeline_stage_for_variant, then the stale-variant check of a done variant."""
        tasks = self._variant_next(conn, v)
        if v.get("status") == "done" and v.get("current_step"):
            tasks.append(self._stale_check(v["job_id"]))
        return tasks

    def _variant_next(self, conn: Conn, v: dict) -> list[Task]:
        step, status = v.get("current_step"), v.get("status")
        job_id, tenant, variant_id = v.get("job_id"), v.get("tenant_id"), v.get("job_variants_id")
        if not step or status not in ("done", "queued"):
            return []
        if status == "queued":
            stage = step if step in stages.VARIANT_STAGES else None
        else:
            stage = NEXT.get(step)
        if status == "done" and step in JOB_NEXT:
            return self._job_level_check(conn, job_id, step, tenant)
        if stage is None or not reads.row_is(conn, "jobs_variants", "job_variants_id", variant_id, step, status,
                                             tenant):
            return []
        call = Call(stage, job_id, tenant, variant_id)
        if stage == "overlay":
            call = Call(stage, job_id, tenant, variant_id, text=reads.overlay_text(conn, job_id, tenant))
        elif stage in NEEDS_OVERLAY:
            overlay = reads.overlay_id(conn, variant_id, job_id, tenant)
            call = Call(stage, job_id, tenant, variant_id, overlay_id=overlay)
        if (stage == "overlay" and not call.text) or (stage in NEEDS_OVERLAY and not call.overlay_id):
            log.warning("%s not started for variant %s: nothing to give it", stage, variant_id)
            return []
        return [self._stage(call)]

    def _job_level_check(self, conn: Conn, job_id: str, step: str, tenant: str) -> list[Task]:
        """_check_and_trigger_job_level_stage: every variant done at `step` -> the job row, or the next stage."""
        with conn.cursor() as cur:
            cur.execute("SELECT count(*), count(*) FILTER (WHERE status = 'done' AND current_step = %s) "
                        "FROM jobs_variants WHERE job_id = %s", (step, job_id))
            total, completed = cur.fetchone()
            if total == 0 or completed < total:
                conn.commit()
                return []
            cur.execute("SELECT current_step, status FROM jobs WHERE job_id = %s", (job_id,))
            row = cur.fetchone()
            if row and row[0] == step and row[1] != "done":
                cur.execute("UPDATE jobs SET status = 'done', current_step = %s, updated_at = CURRENT_TIMESTAMP "
                            "WHERE job_id = %s AND current_step = %s", (step, job_id, step))
        conn.commit()
        if not (row and row[0] == step and row[1] == "done" and self.options.duplicate_trigger):
            return []
        return self._job_next(conn, job_id, step, "done", tenant)

    def _on_job(self, conn: Conn, j: dict) -> list[Task]:
        """_process_job_state_change: lagging variants of a running job, then the next job-level stage."""
        step, status = j.get("current_step"), j.get("status")
        if status in ("running", "failed") and step in stages.VARIANT_STAGES and self.options.recover_lagging:
            return [self._lagging(j["job_id"], step, j.get("tenant_id"))]
        return self._job_next(conn, j.get("job_id"), step, status, j.get("tenant_id"))

    def _job_next(self, conn: Conn, job_id: str, step: str | None, status: str, tenant: str) -> list[Task]:
        """trigger_next_pipeline_stage: a job-level stage, once the job row is re-read as (step, done)."""
        stage = JOB_NEXT.get(step or "")
        if status != "done" or stage is None or not reads.row_is(conn, "jobs", "job_id", job_id, step, status, tenant):
            return []
        return [self._stage(Call(stage, job_id, tenant))]

    def _stage(self, call: Call) -> Task:
        def task(conn: Conn) -> None:
            log.info("[TRIGGER] %s job=%s variant=%s", call.stage, call.job_id, call.variant_id)
            copy = call.stage == "ad_copy_gen_kor"
            if call.stage == "instagram_feed_gen":
                self._after_the_copies(call.job_id)
            with self._cond:
                self._copies[call.job_id] += copy
            try:
                slow = call.variant_id is None and self.options.job_latency is not None
                stages.run(conn, call, self.options.job_latency if slow else self.options.latency)
            except Refused as refused:
                log.warning("%s refused (job=%s): %s", call.stage, call.job_id, refused)
                with self._cond:
                    self.refusals.append(Refusal(call.stage, call.job_id, call.variant_id, refused.reason))
            finally:
                with self._cond:
                    self._copies_done[call.job_id] += copy
                    self._cond.notify_all()
        task.__name__ = call.stage
        return task

    def _after_the_copies(self, job_id: str) -> None:
        """The feed stage (a long GPT call in the deployment) ends after every Korean-copy call of its job: with the
        duplicate trigger, after both (a test can then count on seeing the second before the job is done)."""
        wanted = 2 if self.options.duplicate_trigger else 1
        with self._cond:
            self._cond.wait_for(lambda: self._copies_done[job_id] >= wanted or self._stop.is_set(), 10.0)

    # --- recoveries --------------------------------------------------------------------------

    def _lagging(self, job_id: str, job_step: str, tenant: str) -> Task:
        """_recover_stuck_variants: a variant behind the job row's step is sent on, its retry_count bumped."""
        def task(conn: Conn) -> None:
            with conn.cursor() as cur:
                cur.execute("SELECT job_variants_id::text, current_step, status, img_asset_id::text "
                            "FROM jobs_variants WHERE job_id = %s ORDER BY creation_order", (job_id,))
                rows = cur.fetchall()
                conn.commit()
                for variant_id, step, status, asset in rows:
                    if not 0 <= STEP_ORDER.get(step, -1) < STEP_ORDER[job_step] or status not in ("done", "failed"):
                        continue
                    if not reads.row_is(conn, "jobs_variants", "job_variants_id", variant_id, step, status, None):
                        continue
                    cur.execute(reads.BUMP[status], (variant_id,))
                    conn.commit()
                    payload = {"job_variants_id": variant_id, "job_id": job_id, "current_step": step,
                               "status": "done", "tenant_id": tenant, "img_asset_id": asset}
                    for follow in self._variant_next(conn, payload):
                        self._submit(follow)
        task.__name__ = "recover_lagging"
        return task

    def _stale_check(self, job_id: str) -> Task:
        def task(conn: Conn) -> None:
            reads.bump_stale(conn, job_id, self.options.stale_after)
        task.__name__ = "stale_check"
        return task

    def _recovery_timer(self) -> None:
        while not self._stop.wait(self.options.recovery_period):
            self._submit(reads.fix_iou_eval_jobs)


# --- as a process ----------------------------------------------------------------------------


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    defaults = Options()
    parser = argparse.ArgumentParser(prog="python -m tests.deployment.listener",
                                     description="A listener that behaves like the deployment's, for running "
                                                 "ye-run against a deployment-like database by hand.")
    parser.add_argument("--database-url", required=True, help="postgresql://user@host:port/database")
    parser.add_argument("--no-duplicate-trigger", action="store_true",
                        help="start ad_copy_gen_kor from the job row only (the fixed deployment)")
    parser.add_argument("--latency", type=float, default=defaults.latency,
                        help="seconds each stage works (default 0.005)")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="stage calls at once (default 4)")
    parser.add_argument("--recovery-period", type=float, default=60.0,
                        help="seconds between stuck-job sweeps, as deployed (default 60; 0: none)")
    parser.add_argument("--no-recover-lagging", action="store_true",
                        help="do not re-send variants behind their job row's step")
    parser.add_argument("--install-schema", action="store_true", help="create the deployment-like schema first")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run until interrupted (Ctrl+C or SIGTERM)."""
    args = _arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    database = Database(parse_url(args.database_url))
    if args.install_schema:
        with contextlib.closing(database.connect("deployment-harness")) as conn:
            install_schema(conn)
    options = Options(duplicate_trigger=not args.no_duplicate_trigger, latency=args.latency, workers=args.workers,
                      recovery_period=args.recovery_period or None, recover_lagging=not args.no_recover_lagging)
    listener = DeploymentListener(database, options)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    listener.start()
    log.info("listening on %s (%s)", database.display, options)
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        listener.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

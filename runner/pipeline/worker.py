"""The reference pipeline worker: drives variants through the steps like the real listener.

A dispatcher thread LISTENs on the variant channel; a `(step, done)` notification schedules
the next step. It also sweeps on a timer for variants stuck at `(step, done)` (missed
notifications), polls for `(user_img_input, done)` when it runs the YE part, resumes
variants left `running` by a crashed worker, and re-LISTENs after a lost connection.
Slot threads (one connection each; their number models GPU contention) run the steps:
`(step, running)`, the step's latency, then `(step, done)` in separate commits.

Every claim of a step is a compare-and-set on the variant's current state, so a late
notification, a sweep racing a notification, or a resumed task never moves a variant twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import select
import threading
import time
from dataclasses import dataclass, field

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from runner import steps
from runner.db import catalog as catalog_module
from runner.db.connect import Database
from runner.db.requirements import VARIANT_CHANNEL
from runner.pipeline import faults
from runner.pipeline.config import PipelineConfig
from runner.pipeline.scope import JobBook, Scope, VariantInfo
from runner.pipeline.stats import WorkerStats

log = logging.getLogger("ye_run.pipeline")
EVAL_STEPS = frozenset({"vlm_judge", "ocr_eval", "readability_eval", "iou_eval"})
_LOST = (psycopg2.OperationalError, psycopg2.InterfaceError)


class WorkerCrashed(Exception):
    """The injected `crash` fault: the worker stops in the middle of a step."""


@dataclass(frozen=True, slots=True)
class Task:
    info: VariantInfo
    step: str
    expect: tuple[str, str]
    """The state the variant must be in for this task to claim it."""
    resumed: bool = False
    """A step picked up again (after a crash or a retry): entry faults (skip, crash) do not reapply."""


@dataclass
class SharedState:
    """What survives a worker restart inside one process (the in-process host keeps it)."""

    book: JobBook = field(default_factory=JobBook)
    attempts: dict[tuple[str, str], int] = field(default_factory=dict)
    went_back: set[tuple[str, str]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Worker:
    """One reference pipeline worker; `start()` it, then `stop()` it (or it stops on a crash)."""

    def __init__(self, database: Database, config: PipelineConfig, scope: Scope,
                 shared: SharedState | None = None, channel: str = VARIANT_CHANNEL, name: str = "ye-run pipeline"):
        self.database = database
        self.config = config
        self.scope = scope
        self.shared = shared or SharedState()
        self.channel = channel
        self.name = name
        self.stats = WorkerStats()
        self.stopping = threading.Event()
        self.crash: WorkerCrashed | None = None
        self.reconnects = 0
        self._queue: queue.Queue[Task] = queue.Queue()
        self._in_flight: set[tuple[str, str]] = set()
        self._ignore: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._connections: list[psycopg2.extensions.connection] = []
        self._sql: dict[str, str] = {}

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        with contextlib.closing(self.database.connect(self.name)) as conn:
            self._prepare_sql(catalog_module.read(conn), conn)
        self._threads = [threading.Thread(target=self._dispatch, name="pipeline-dispatch", daemon=True)]
        self._threads += [threading.Thread(target=self._slot, name=f"pipeline-slot-{i}", daemon=True)
                          for i in range(self.config.slots)]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker stops (Ctrl+C or crash); True if it stopped."""
        return self.stopping.wait(timeout)

    # --- SQL, built once from the catalog -------------------------------------------------

    def _prepare_sql(self, catalog: catalog_module.Catalog, conn: psycopg2.extensions.connection) -> None:
        table = catalog.table("jobs_variants")
        if table is None:
            from runner.errors import SchemaMissingError

            raise SchemaMissingError("the database has no jobs_variants table for the pipeline to drive")
        sets = [sql.SQL("current_step = %s"), sql.SQL("status = %s")]
        if table.has("updated_at"):
            sets.append(sql.SQL("updated_at = clock_timestamp()"))
        retry = sets + ([sql.SQL("retry_count = retry_count + 1")] if table.has("retry_count") else [])
        base = sql.SQL("UPDATE jobs_variants SET {} WHERE job_variants_id = %s")
        self._sql["write"] = base.format(sql.SQL(", ").join(sets)).as_string(conn)
        self._sql["retry"] = base.format(sql.SQL(", ").join(retry)).as_string(conn)
        self._sql["claim"] = self._sql["write"] + " AND current_step = %s AND status = %s"
        self._sql["evaluate"] = (
            "INSERT INTO variant_evaluations (job_variants_id, step, score) VALUES (%s, %s, %s)"
            if catalog.has("variant_evaluations", "score") else "")

    # --- the dispatcher -----------------------------------------------------------------

    def _dispatch(self) -> None:
        conn: psycopg2.extensions.connection | None = None
        backoff = 0.05
        next_sweep = next_poll = 0.0
        while not self.stopping.is_set():
            try:
                if conn is None:
                    conn = self._listen()
                    self._resume(conn)
                    next_sweep = 0.0
                    backoff = 0.05
                now = time.monotonic()
                if self.config.with_ye and now >= next_poll:
                    self._poll_ye(conn)
                    next_poll = now + self.config.ye_poll
                if now >= next_sweep:
                    self._sweep(conn)
                    next_sweep = now + self.config.sweep
                wake = min(next_sweep, next_poll if self.config.with_ye else next_sweep)
                self._receive(conn, max(0.0, min(0.2, wake - time.monotonic())))
            except _LOST as exc:
                log.warning("pipeline: lost the LISTEN connection (%s); reconnecting", str(exc).strip() or "closed")
                self.reconnects += 1
                _close(conn)
                conn = None
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 2.0)
        _close(conn)

    def _listen(self) -> psycopg2.extensions.connection:
        conn = self.database.connect(f"{self.name} listen", autocommit=True, keepalives=True)
        with conn.cursor() as cur:
            cur.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        return conn

    def _receive(self, conn: psycopg2.extensions.connection, timeout: float) -> None:
        if select.select([conn], [], [], timeout)[0]:
            conn.poll()
        while conn.notifies:
            self._on_notify(conn, conn.notifies.pop(0).payload)

    def _on_notify(self, conn: psycopg2.extensions.connection, payload: str) -> None:
        try:
            data = json.loads(payload)
            variant_id, job_id = str(data["job_variants_id"]), str(data["job_id"])
            step, status = data["current_step"], data["status"]
        except (ValueError, KeyError, TypeError):
            log.warning("pipeline: ignoring a malformed notification: %.200s", payload)
            return
        if status != "done" or not self.scope.admits(job_id, data.get("tenant_id")):
            return
        with self._lock:
            if (variant_id, step) in self._ignore:
                self._ignore.discard((variant_id, step))
                log.info("pipeline: ignored the notification of %s done (stall_notify); the sweep will move it", step)
                return
        self._schedule_after(conn, variant_id, job_id, step)

    def _next(self, step: str) -> str | None:
        """The step this worker runs after `step`, or None (end, stop_after, or not its part)."""
        if step == "user_img_input":
            return "img_gen" if self.config.with_ye else None
        if step not in steps.PIPELINE:
            return None
        if self.config.stop_after and steps.index(step) >= steps.index(self.config.stop_after):
            return None
        return steps.next_step(step)

    def _runs(self, step: str) -> bool:
        """Whether this worker runs `step`: img_gen belongs to the YE part (or the runner's simulation)."""
        return step in steps.PIPELINE[2:] or (step == "img_gen" and self.config.with_ye)

    def _schedule_after(self, conn: psycopg2.extensions.connection, variant_id: str, job_id: str, step: str) -> None:
        following = self._next(step)
        if following is None:
            return
        info = self._info(conn, variant_id, job_id)
        if info is not None:
            self._enqueue(Task(info, following, (step, "done")))

    def _info(self, conn: psycopg2.extensions.connection, variant_id: str, job_id: str) -> VariantInfo | None:
        known = self.shared.book.known(variant_id)
        if known is None:
            with conn.cursor() as cur:
                cur.execute("SELECT job_variants_id::text, creation_order FROM jobs_variants WHERE job_id = %s "
                            "ORDER BY creation_order", (job_id,))
                self.shared.book.learn(job_id, cur.fetchall())
            known = self.shared.book.known(variant_id)
        return known

    def _enqueue(self, task: Task) -> None:
        key = (task.info.variant_id, task.step)
        with self._lock:
            if key in self._in_flight:
                return
            self._in_flight.add(key)
        self._queue.put(task)

    def _scan(self, conn: psycopg2.extensions.connection, condition: str, params: list) -> list[tuple]:
        where, scope_params = self.scope.where("v")
        query = sql.SQL("SELECT v.job_variants_id::text, v.job_id::text, v.current_step, v.status FROM jobs_variants v "
                        "WHERE {} AND {} ORDER BY v.job_id, v.creation_order").format(sql.SQL(condition), where)
        with conn.cursor() as cur:
            cur.execute(query, params + scope_params)
            return cur.fetchall()

    def _sweep(self, conn: psycopg2.extensions.connection) -> None:
        driving = [s for s in steps.PIPELINE if self._next(s) is not None and s != "user_img_input"]
        for variant_id, job_id, step, _ in self._scan(conn, "v.status = 'done' AND v.current_step = ANY(%s)",
                                                      [driving]):
            self._schedule_after(conn, variant_id, job_id, step)

    def _poll_ye(self, conn: psycopg2.extensions.connection) -> None:
        for variant_id, job_id, step, _ in self._scan(
                conn, "v.status = 'done' AND v.current_step = 'user_img_input'", []):
            self._schedule_after(conn, variant_id, job_id, step)

    def _resume(self, conn: psycopg2.extensions.connection) -> None:
        """Pick up variants a previous worker left `running` or `queued` in its step."""
        for variant_id, job_id, step, status in self._scan(conn, "v.status IN ('running', 'queued')", []):
            if self._runs(step):
                info = self._info(conn, variant_id, job_id)
                if info is not None:
                    log.info("pipeline: resuming %s of variant #%d (left %s)", step, info.creation_order, status)
                    self._enqueue(Task(info, step, (step, status), resumed=True))

    # --- the slots ----------------------------------------------------------------------

    def _slot(self) -> None:
        conn: psycopg2.extensions.connection | None = None
        while not self.stopping.is_set():
            try:
                task = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                if conn is None:
                    conn = self.database.connect(self.name, keepalives=True)
                    self._connections.append(conn)
                self._execute(conn, task)
            except WorkerCrashed as crash:
                self.crash = crash
                log.error("pipeline: crashed (injected fault): %s", crash)
                self.stopping.set()
            except _LOST:
                _close(conn)
                conn = None
                if not self.stopping.is_set():
                    self._queue.put(task)
                    continue
            finally:
                with self._lock:
                    self._in_flight.discard((task.info.variant_id, task.step))
        _close(conn)

    def _execute(self, conn: psycopg2.extensions.connection, task: Task) -> None:
        info, step, config = task.info, task.step, self.config
        while not task.resumed and faults.find(config, "skip", info, step):
            log.info("pipeline: skipping %s for variant #%d (fault)", step, info.creation_order)
            following = self._next(step)
            if following is None:
                return
            step = following
        with self.shared.lock:
            attempt = self.shared.attempts.get((info.variant_id, step), 0)
        if not self._claim(conn, info, step, task.expect):
            return
        if attempt == 0 and not task.resumed and faults.find(config, "crash", info, step):
            raise WorkerCrashed(f"in {step} of variant #{info.creation_order} (job {info.job_id[:8]})")
        if faults.find(config, "hang", info, step):
            log.info("pipeline: %s of variant #%d hangs (fault)", step, info.creation_order)
            return
        started = time.monotonic()
        if self.stopping.wait(faults.latency(config, info, step, attempt)):
            return
        if faults.find(config, "fail", info, step, attempt):
            self._commit(conn, info, [(step, "failed", False)])
            self.stats.outcome(info.variant_id, failed=True)
            return
        retry = faults.find(config, "fail_then_retry", info, step, attempt)
        if retry is not None and attempt < retry.times:
            self._fail_and_retry(conn, info, step, attempt)
            return
        self._finish(conn, info, step)
        self.stats.step_took(step, time.monotonic() - started)

    def _claim(self, conn: psycopg2.extensions.connection, info: VariantInfo, step: str,
               expect: tuple[str, str]) -> bool:
        with conn.cursor() as cur:
            cur.execute(self._sql["claim"], (step, "running", info.variant_id, *expect))
            claimed = cur.rowcount == 1
        conn.commit()
        if claimed:
            self._logged(info, step, "running")
        return claimed

    def _fail_and_retry(self, conn: psycopg2.extensions.connection, info: VariantInfo, step: str, attempt: int) -> None:
        with self.shared.lock:
            self.shared.attempts[(info.variant_id, step)] = attempt + 1
        if attempt >= self.config.max_retries:
            self._commit(conn, info, [(step, "failed", False)])
            self.stats.outcome(info.variant_id, failed=True)
            return
        self._commit(conn, info, [(step, "failed", False)])
        target = steps.RETRY_TARGET.get(step, (step, "queued"))
        with self._lock:  # the retry's own notification may arrive before this task returns
            self._in_flight.discard((info.variant_id, step))
        self._commit(conn, info, [(*target, True)])
        if target == (step, "queued"):
            self._enqueue(Task(info, step, (step, "queued"), resumed=True))

    def _finish(self, conn: psycopg2.extensions.connection, info: VariantInfo, step: str) -> None:
        writes = [(step, "done", False)]
        if faults.find(self.config, "duplicate", info, step):
            writes.append((step, "done", False))
        back = faults.find(self.config, "backwards", info, step)
        went_back = False
        if back is not None:
            with self.shared.lock:
                went_back = (info.variant_id, step) not in self.shared.went_back
                self.shared.went_back.add((info.variant_id, step))
        if went_back and back is not None:
            target = back.to or steps.PIPELINE[steps.index(step) - 1]
            writes += [(target, "running", False), (target, "done", False)]
        elif faults.find(self.config, "stall_notify", info, step):
            with self._lock:
                self._ignore.add((info.variant_id, step))
        self._commit(conn, info, writes, evaluate=step in EVAL_STEPS)
        if not went_back and self._next(step) is None:
            self.stats.outcome(info.variant_id, failed=False)

    def _commit(self, conn: psycopg2.extensions.connection, info: VariantInfo, writes: list[tuple[str, str, bool]],
                evaluate: bool = False) -> None:
        """Several writes of one variant in one transaction (a fault's extra writes land atomically)."""
        with conn.cursor() as cur:
            for step, status, bump in writes:
                cur.execute(self._sql["retry" if bump else "write"], (step, status, info.variant_id))
            if evaluate and self._sql["evaluate"]:
                score = faults.rng(self.config, info, writes[0][0], 0, "score").random()
                cur.execute(self._sql["evaluate"], (info.variant_id, writes[0][0], round(score, 4)))
        conn.commit()
        for step, status, _ in writes:
            self._logged(info, step, status)

    def _logged(self, info: VariantInfo, step: str, status: str) -> None:
        self.stats.transition(info.variant_id)
        log.info("job=%s variant=#%d step=%s status=%s", info.job_id[:8], info.creation_order, step, status)


def _close(conn: psycopg2.extensions.connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(psycopg2.Error):
            conn.close()

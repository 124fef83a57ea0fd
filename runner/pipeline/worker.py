"""The reference pipeline worker: drives variants, then their job row, through the steps.

A dispatcher thread LISTENs on the variant and job channels; a `(step, done)` notification
schedules the next step. Variants walk the definition's variant steps; once every variant is
done at the last of them (the job-completion trigger moves the jobs row there), the job row
walks the job-level steps, each writing what the definition says it writes. The dispatcher
also sweeps on a timer for rows stuck at `(step, done)` (missed notifications), polls for
`(user_img_input, done)` when it runs the YE part, resumes rows left `running` by a crashed
worker, and re-LISTENs after a lost connection. The job-level steps read and write what the
deployment's stages do (`jobwork`: the ad copy, the feed). Slot threads (one connection each; their
number models GPU contention) run the steps.

Every claim of a step is a compare-and-set on the row's current state, so a late
notification, a sweep racing a notification, or a resumed task never moves a row twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import select
import threading
import time

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from runner.db import catalog as catalog_module
from runner.db.connect import Database
from runner.db.reconnect import BROKEN, Backoff, parse
from runner.db.requirements import JOB_CHANNEL, VARIANT_CHANNEL
from runner.definition import DEFAULT, Definition
from runner.errors import InfrastructureError
from runner.pipeline import faults, route
from runner.pipeline.config import PipelineConfig
from runner.pipeline.scope import Scope, VariantInfo
from runner.pipeline.tasks import SharedState, Task, WorkerCrashed, who
from runner.pipeline.writes import RowWriter, Write
from runner.pipeline.stats import WorkerStats

log = logging.getLogger("ye_run.pipeline")
EVAL_STEPS = frozenset({"vlm_judge", "ocr_eval", "readability_eval", "iou_eval"})
_LOST = (*BROKEN, InfrastructureError)
"""A broken connection (reconnect.BROKEN), or a server that refuses new ones (restarting): wait, reconnect, go on."""


class Worker:
    """One reference pipeline worker; `start()` it, then `stop()` it (or it stops on a crash)."""

    def __init__(self, database: Database, config: PipelineConfig, scope: Scope,
                 shared: SharedState | None = None, channel: str = VARIANT_CHANNEL, name: str = "ye-run pipeline",
                 definition: Definition = DEFAULT, job_channel: str = JOB_CHANNEL):
        self.database = database
        self.config = config
        self.scope = scope
        self.shared = shared or SharedState()
        self.channel = channel
        self.job_channel = job_channel
        self.name = name
        self.definition = definition
        self.stats = WorkerStats()
        self.stopping = threading.Event()
        self.crash: WorkerCrashed | None = None
        self.reconnects = 0
        self._queue: queue.Queue[Task | None] = queue.Queue()
        self._wake: tuple[int, int] | None = None
        """A pipe whose write end stop() writes to, so a dispatcher waiting in select() ends at once."""
        self._in_flight: set[tuple[str, str]] = set()
        self._ignore: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._connections: list[psycopg2.extensions.connection] = []
        self._rows: RowWriter | None = None
        self._route = route.Route(definition, config)

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        with contextlib.closing(self.database.connect(self.name)) as conn:
            self._rows = RowWriter(catalog_module.read(conn), conn, self.config)
        self._wake = os.pipe()
        self._threads = [threading.Thread(target=self._dispatch, name="pipeline-dispatch", daemon=True)]
        self._threads += [threading.Thread(target=self._slot, name=f"pipeline-slot-{i}", daemon=True)
                          for i in range(self.config.slots)]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop now: the slots and the dispatcher are woken rather than left to notice at their next timeout."""
        self.stopping.set()
        for _ in range(self.config.slots):
            self._queue.put(None)
        if self._wake is not None:
            with contextlib.suppress(OSError):
                os.write(self._wake[1], b"x")
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
        if not any(t.is_alive() for t in self._threads):
            with self._lock:  # stop() may run twice at once (the host, and its supervisor after a crash)
                wake, self._wake = self._wake, None
            for end in wake or ():
                os.close(end)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker stops (Ctrl+C or crash); True if it stopped."""
        return self.stopping.wait(timeout)

    # --- the dispatcher -----------------------------------------------------------------

    def _dispatch(self) -> None:
        conn: psycopg2.extensions.connection | None = None
        backoff = Backoff(0.05, 2.0)
        next_sweep = next_poll = 0.0
        while not self.stopping.is_set():
            try:
                if conn is None:
                    conn = self._listen()
                    self._resume(conn)
                    next_sweep = 0.0
                    backoff.reset()
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
                self.stopping.wait(backoff.next())
        _close(conn)

    def _listen(self) -> psycopg2.extensions.connection:
        conn = self.database.connect(f"{self.name} listen", autocommit=True, keepalives=True)
        with conn.cursor() as cur:
            for channel in (self.channel, self.job_channel):
                cur.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        return conn

    def _receive(self, conn: psycopg2.extensions.connection, timeout: float) -> None:
        ready = select.select([conn] if self._wake is None else [conn, self._wake[0]], [], [], timeout)[0]
        if self.stopping.is_set():
            return
        if conn in ready:
            conn.poll()
        while conn.notifies:
            note = conn.notifies.pop(0)
            self._on_notify(conn, note.payload, note.channel == self.job_channel)

    def _on_notify(self, conn: psycopg2.extensions.connection, payload: str, job_row: bool) -> None:
        note = parse(payload, job_row)
        if note is None or note.status != "done" or not self.scope.admits(note.job_id, note.tenant_id):
            return
        row_id, job_id, step = note.row_id, note.job_id, note.step
        with self._lock:
            if (row_id, step) in self._ignore:
                self._ignore.discard((row_id, step))
                log.info("pipeline: ignored the notification of %s done (stall_notify); the sweep will move it", step)
                return
        if job_row:
            self._schedule_job_after(conn, job_id, step)
        else:
            self._schedule_after(conn, row_id, job_id, step)

    def _schedule_after(self, conn: psycopg2.extensions.connection, variant_id: str, job_id: str, step: str) -> None:
        following = self._route.next(step)
        if following is None:
            return
        info = self._info(conn, variant_id, job_id)
        if info is not None:
            self._enqueue(Task(info, following, (step, "done")))

    def _schedule_job_after(self, conn: psycopg2.extensions.connection, job_id: str, step: str) -> None:
        following = self._route.next(step, "j")
        if following is not None:
            self._enqueue(Task(self._job_info(conn, job_id), following, (step, "done"), level="j"))

    def _info(self, conn: psycopg2.extensions.connection, variant_id: str, job_id: str) -> VariantInfo | None:
        known = self.shared.book.known(variant_id)
        if known is None:
            self._learn(conn, job_id)
            known = self.shared.book.known(variant_id)
        return known

    def _job_info(self, conn: psycopg2.extensions.connection, job_id: str) -> VariantInfo:
        ordinal = self.shared.book.ordinal(job_id)
        if ordinal is None:
            self._learn(conn, job_id)
            ordinal = self.shared.book.ordinal(job_id) or 0
        return VariantInfo(job_id, job_id, 0, ordinal)

    def _learn(self, conn: psycopg2.extensions.connection, job_id: str) -> None:
        with conn.cursor() as cur:
            cur.execute("SELECT job_variants_id::text, creation_order FROM jobs_variants WHERE job_id = %s "
                        "ORDER BY creation_order", (job_id,))
            self.shared.book.learn(job_id, cur.fetchall())

    def _enqueue(self, task: Task) -> None:
        key = (task.row_id, task.step)
        with self._lock:
            if key in self._in_flight:
                return
            self._in_flight.add(key)
        self._queue.put(task)

    def _sweep(self, conn: psycopg2.extensions.connection) -> None:
        names = self.definition.variant_names
        driving = [s for s in names if self._route.next(s) is not None and s != self.definition.seed]
        done = "v.status = 'done' AND v.current_step = ANY(%s)"
        for variant_id, job_id, step, _ in route.scan(conn, self.scope, done, [driving]):
            self._schedule_after(conn, variant_id, job_id, step)
        job_driving = [s for s in self.definition.names if self._route.next(s, "j") is not None]
        if job_driving:
            job_done = "j.status = 'done' AND j.current_step = ANY(%s)"
            for job_id, step, _ in route.scan(conn, self.scope, job_done, [job_driving], level="j"):
                self._schedule_job_after(conn, job_id, step)

    def _poll_ye(self, conn: psycopg2.extensions.connection) -> None:
        seeded = "v.status = 'done' AND v.current_step = %s"
        for variant_id, job_id, step, _ in route.scan(conn, self.scope, seeded, [self.definition.seed]):
            self._schedule_after(conn, variant_id, job_id, step)

    def _resume(self, conn: psycopg2.extensions.connection) -> None:
        """Pick up rows a previous worker left `running` or `queued` in a step this worker runs."""
        for variant_id, job_id, step, status in route.scan(conn, self.scope, "v.status IN ('running', 'queued')", []):
            if self._route.runs(step) and self.definition.level(step) == "variant":
                info = self._info(conn, variant_id, job_id)
                if info is not None:
                    log.info("pipeline: resuming %s of variant #%d (left %s)", step, info.creation_order, status)
                    self._enqueue(Task(info, step, (step, status), resumed=True))
        if self.definition.job_steps:
            left = "j.status IN ('running', 'queued') AND j.current_step = ANY(%s)"
            for job_id, step, status in route.scan(conn, self.scope, left, [list(self.definition.job_names)],
                                                   level="j"):
                log.info("pipeline: resuming %s of job %s (left %s)", step, job_id[:8], status)
                self._enqueue(Task(self._job_info(conn, job_id), step, (step, status), resumed=True, level="j"))

    # --- the slots ----------------------------------------------------------------------

    def _slot(self) -> None:
        conn: psycopg2.extensions.connection | None = None
        while not self.stopping.is_set():
            try:
                task = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if task is None or self.stopping.is_set():  # stop()'s wake-up, or a task left when it came
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
            except (*_LOST, psycopg2.DatabaseError) as exc:
                if not isinstance(exc, _LOST) and exc.pgcode is not None:
                    raise  # the server refused a statement: a bug to see, not a connection to replace
                _close(conn)  # lost, also as libpq's bare "could not receive data from server" (no SQLSTATE)
                conn = None
                if not self.stopping.is_set():
                    self.stopping.wait(0.5)  # the server may be restarting: do not spin on it
                    self._queue.put(dataclasses.replace(task, recheck=True))
                    continue
            finally:
                with self._lock:
                    self._in_flight.discard((task.row_id, task.step))
        _close(conn)

    def _execute(self, conn: psycopg2.extensions.connection, task: Task) -> None:
        if task.recheck:
            found = RowWriter.reread(conn, task)
            if found is None:
                return
            task = found
        info, config, expect = task.info, self.config, task.expect
        step = self._past_skips(task)
        if step is None:
            return
        with self.shared.lock:
            attempt = self.shared.attempts.get((task.row_id, step), 0)
        writes = list(self.definition.writes(step))
        if len(writes) > 1:  # a step that writes only `done` claims the row with that write instead
            if not self._claim(conn, task, step, writes[0]):
                return
            expect, writes = (step, writes[0]), writes[1:]
        if attempt == 0 and not task.resumed and faults.find(config, "crash", info, step):
            raise WorkerCrashed(f"in {step} of {who(task)} (job {info.job_id[:8]})")
        if faults.find(config, "hang", info, step):
            log.info("pipeline: %s of %s hangs (fault)", step, who(task))
            return
        started = time.monotonic()
        if self.stopping.wait(faults.latency(config, info, step, attempt)):
            return
        if faults.find(config, "fail", info, step, attempt):
            if self._commit(conn, task, [(step, "failed", False)], expect):
                self._outcome(task, failed=True)
            return
        retry = faults.find(config, "fail_then_retry", info, step, attempt)
        if retry is not None and attempt < retry.times:
            self._fail_and_retry(conn, task, step, attempt, expect)
            return
        if task.level == "j" and faults.find(config, "duplicate_trigger", info, step):
            self._twice(conn, task, step, writes, expect)
        else:
            self._finish(conn, task, step, writes, expect)
        self.stats.step_took(step, time.monotonic() - started)

    def _fail_and_retry(self, conn: psycopg2.extensions.connection, task: Task, step: str, attempt: int,
                        expect: tuple[str, str]) -> None:
        with self.shared.lock:
            self.shared.attempts[(task.row_id, step)] = attempt + 1
        if not self._commit(conn, task, [(step, "failed", False)], expect):
            return
        if attempt >= self.config.max_retries:
            self._outcome(task, failed=True)
            return
        if self.config.retry_backoff and self.stopping.wait(self.config.retry_backoff):
            return
        target = self.definition.retry_target(step)
        with self._lock:  # the retry's own notification may arrive before this task returns
            self._in_flight.discard((task.row_id, step))
        self._commit(conn, task, [(*target, True)])
        if target[1] == "queued" and (target[0] == step or self._route.runs(target[0])):
            self._enqueue(Task(task.info, target[0], target, resumed=True, level=task.level))

    def _finish(self, conn: psycopg2.extensions.connection, task: Task, step: str, writes: list[str],
                expect: tuple[str, str]) -> None:
        info = task.info
        planned = [(step, status, False) for status in writes]
        if faults.find(self.config, "duplicate", info, step):
            planned.append((step, "done", False))
        back = faults.find(self.config, "backwards", info, step)
        went_back = False
        if back is not None:
            with self.shared.lock:
                went_back = (task.row_id, step) not in self.shared.went_back
                self.shared.went_back.add((task.row_id, step))
        if went_back and back is not None:
            target = back.to or self.definition.previous_step(step) or step
            planned += [(target, status, False) for status in self.definition.writes(target)]
        elif faults.find(self.config, "stall_notify", info, step):
            with self._lock:
                self._ignore.add((task.row_id, step))
        if not self._commit(conn, task, planned, expect, evaluate=task.level == "v" and step in EVAL_STEPS,
                            work=True):
            return
        if not went_back and self._route.next(step, task.level) is None:
            self._outcome(task, failed=False)

    def _twice(self, conn: psycopg2.extensions.connection, task: Task, step: str, writes: list[str],
               expect: tuple[str, str]) -> None:
        """The deployment's double start: the job row's change and the last variant's completion both start the
        step, each having seen the row before either wrote, so the second run writes over the first's `done`."""
        following = self._route.next(step, "j")
        held = {(task.row_id, following)} if following is not None else set()
        with self._lock:  # the next step starts after the second run, as the slower real stage does
            self._in_flight |= held
        try:
            first = self._commit(conn, task, [(step, s, False) for s in writes], expect, work=True)
            if first:
                log.info("pipeline: %s of the job row started a second time (duplicate_trigger)", step)
                self._commit(conn, task, [(step, s, False) for s in writes], work=True)
        finally:
            with self._lock:
                self._in_flight -= held
        if first and following is not None:
            self._enqueue(Task(task.info, following, (step, "done"), level="j"))

    def _past_skips(self, task: Task) -> str | None:
        """The step to run: the task's, or past those the `skip` fault skips (None: nothing left to run)."""
        step: str | None = task.step
        while step is not None and not task.resumed and faults.find(self.config, "skip", task.info, step):
            log.info("pipeline: skipping %s for %s (fault)", step, who(task))
            step = self._route.next(step, task.level)
        return step

    def _claim(self, conn: psycopg2.extensions.connection, task: Task, step: str, status: str) -> bool:
        assert self._rows is not None
        claimed = self._rows.claim(conn, task, step, status)
        if claimed:
            self._logged(task, step, status)
        return claimed

    def _commit(self, conn: psycopg2.extensions.connection, task: Task, writes: list[Write],
                expect: tuple[str, str] | None = None, evaluate: bool = False, work: bool = False) -> bool:
        """RowWriter.commit, and each write logged once it is in."""
        assert self._rows is not None
        if not self._rows.commit(conn, task, writes, expect, evaluate, work):
            return False
        for step, status, _ in writes:
            self._logged(task, step, status)
        return True

    def _outcome(self, task: Task, failed: bool) -> None:
        """The summary counts variants; a job row's steps show in its transitions."""
        if task.level == "v":
            self.stats.outcome(task.row_id, failed=failed)

    def _logged(self, task: Task, step: str, status: str) -> None:
        self.stats.transition(task.row_id if task.level == "v" else None)
        info = task.info
        who = f"variant=#{info.creation_order}" if task.level == "v" else "row=job"
        log.info("job=%s %s step=%s status=%s", info.job_id[:8], who, step, status)


def _close(conn: psycopg2.extensions.connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(psycopg2.Error):
            conn.close()

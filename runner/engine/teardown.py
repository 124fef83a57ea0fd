"""After the verdict: applying the cleanup policy, without ever holding the verdict back.

The run's verdict is reported first; cleanup follows, on the run's own connection (its lock keeps
other cleaners off). It waits only while the pipeline can still be working on the run's rows: a row
done at the end of its steps is not, and neither is one that has been silent for longer than the
step under way (or next) may take: the pipeline definition's bound for it. Past `cleanup_wait`, rows
that may still be in the pipeline's hands are kept and recorded as pending; `ye-run cleanup
--pending` removes them once that time is over.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import psycopg2
import psycopg2.extensions

from runner.db import catalog as catalog_module, cleanup, failures, reconnect, registry
from runner.db.failures import ConnectionLost
from runner.durations import format_seconds
from runner.engine.connection import RunRemoved
from runner.engine.events import Emitter, Note, ScenarioRef
from runner.engine.results import Outcome, ScenarioResult
from runner.errors import InfrastructureError, Interrupted, YeRunError
from runner.scenario.model import Scenario

POLL = 0.2
"""How often the rows are read while the pipeline may still be working on them."""
AFTER_INTERRUPT = 5.0
"""At most this long the cleanup of an interrupted run waits for a lost database: an interrupt asks for the
reports soon (a container's stop gives 10 s before SIGKILL); the rows are then kept, and the run says how to
remove them."""


@dataclass
class Housekeeping:
    """The cleanup policy of one finished run."""

    scenario: Scenario
    result: ScenarioResult
    emit: Emitter
    ref: ScenarioRef
    hurry: threading.Event
    connection: Callable[[int | None], psycopg2.extensions.connection]
    """The run's connection (reopened, lock and all, if it was lost); the argument is a connect timeout."""
    drop: Callable[[], None]
    """Close the run's connection (it was lost: the next attempt reconnects)."""
    reconnect_window: float
    cleanup_wait: float
    waits_for_pipeline: bool
    """False with the in-process reference pipeline: it has stopped, nothing can still be writing."""
    registered: bool
    error: YeRunError | None = None
    """Why the policy could not be applied (the scenario's verdict stands; the exit code says it)."""
    _conn: psycopg2.extensions.connection | None = field(default=None, repr=False)
    _next_note: float = field(default=0.0, repr=False)

    def apply(self) -> None:
        """The policy, tried again while the database is unreachable (within the reconnect window)."""
        record, policy, outcome = self.result.record, self.scenario.cleanup, self.result.outcome
        if record is None or not record.jobs or outcome == Outcome.SEEDED:
            return
        if policy == "never" or (policy == "on_success" and outcome != Outcome.PASSED):
            return
        if self.hurry.is_set():
            self._skipped()
            return
        patience = min(self.reconnect_window, AFTER_INTERRUPT) if outcome == Outcome.INTERRUPTED \
            else self.reconnect_window
        window = reconnect.Window(patience, (self.hurry,))
        try:
            reconnect.retry(lambda timeout: self._attempt(record, timeout), window,
                            lambda exc: isinstance(exc, ConnectionLost), self._waiting)
        except YeRunError as exc:
            if self.hurry.is_set():
                self._skipped()
            else:
                self._failed(exc)

    def _attempt(self, record: registry.RunRecord, connect_timeout: int | None) -> None:
        """One try, rolled back whole if it fails (a lost connection is made again by the next)."""
        try:
            self._once(record, connect_timeout)
        except psycopg2.Error as exc:
            raise failures.describe(exc, "cleaning up") from None
        except ConnectionLost:
            self.drop()
            raise
        finally:
            self._conn = None

    def _waiting(self, window: reconnect.Window, exc: Exception) -> None:
        """Said every 5 s while the database is away; the transaction rolled back with the connection."""
        if window.elapsed >= self._next_note:
            self.emit(Note(self.ref, f"cleanup: database unreachable, retrying ({format_seconds(window.elapsed)} "
                                     f"of {format_seconds(window.seconds)}): {exc}"))
            self._next_note = window.elapsed + 5.0

    def cut_short(self) -> None:
        """From another thread (a second signal): cancel the cleanup statement under way; it rolls back whole."""
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(psycopg2.Error):
                conn.cancel()

    def _once(self, record: registry.RunRecord, connect_timeout: int | None) -> None:
        try:
            conn = self.connection(connect_timeout)
        except RunRemoved:
            raise
        except InfrastructureError as exc:  # this run reached the server before: it is restarting, or gone
            raise ConnectionLost(str(exc)) from None
        self._conn = conn
        snapshot = catalog_module.read(conn)
        busy, until = self._wait_for_pipeline(conn, snapshot, record.job_ids)
        if busy:
            self._pending(conn, busy, until)
            return
        self.result.cleanup = cleanup.cleanup_run(conn, snapshot, record, own=True)

    def _wait_for_pipeline(self, conn: psycopg2.extensions.connection, snapshot: catalog_module.Catalog,
                           job_ids: list[str]) -> tuple[int, float]:
        """Until no row can still be worked on, at most `cleanup_wait`: (rows that still may be, and for how many
        more seconds at most)."""
        if not self.waits_for_pipeline:
            return 0, 0.0
        started = time.monotonic()
        while True:
            busy = still_working(conn, snapshot, self.scenario, job_ids)
            now = time.monotonic()
            if not busy:
                if now - started >= 1:
                    self.emit(Note(self.ref, f"cleanup waited {format_seconds(now - started)} for the pipeline to "
                                             f"finish with {len(job_ids)} job(s)"))
                return 0, 0.0
            if now - started >= self.cleanup_wait or self.hurry.is_set():
                return len(busy), max(busy)
            self.hurry.wait(min(POLL, max(busy)))

    def _pending(self, conn: psycopg2.extensions.connection, busy: int, until: float) -> None:
        """Rows the pipeline may still be writing: kept, and recorded so `cleanup --pending` finds them."""
        if self.registered:
            registry.pend(conn, self.result.run_id, until)
        self.result.cleanup_pending = datetime.now(timezone.utc) + timedelta(seconds=until)
        self.result.cleanup_pending_rows = busy

    def _skipped(self) -> None:
        """A second signal: the policy was not applied, the rows are kept; the verdict stands, the exit is 130."""
        self.error = Interrupted(f"cleanup skipped (second signal); the rows are kept: "
                                 f"ye-run cleanup --run {self.result.run_id}")

    def _failed(self, exc: YeRunError) -> None:
        """Rows the policy says must go are still there: said, and the exit code says so too."""
        self.error = YeRunError(f"cleanup failed: {exc}; the rows are kept: "
                                f"ye-run cleanup --run {self.result.run_id} once fixed")
        self.error.exit_code = exc.exit_code


def still_working(conn: psycopg2.extensions.connection, snapshot: catalog_module.Catalog, scenario: Scenario,
                  job_ids: list[str]) -> list[float]:
    """For each of the jobs' rows the pipeline may still be working on, how many more seconds it may take (from
    its last write, where the table keeps `updated_at`; from now, where it does not)."""
    silent = {table: "extract(epoch FROM now() - updated_at)::float8" if snapshot.has(table, "updated_at")
              else "0::float8" for table in ("jobs", "jobs_variants")}
    with conn.cursor() as cur:
        cur.execute(f"SELECT 'j', current_step, status, {silent['jobs']} FROM jobs WHERE job_id = ANY(%s::uuid[]) "
                    f"UNION ALL SELECT 'v', current_step, status, {silent['jobs_variants']} FROM jobs_variants "
                    "WHERE job_id = ANY(%s::uuid[])", (job_ids, job_ids))
        rows = cur.fetchall()
    conn.rollback()
    left = [bound - (silent or 0.0) for kind, step, status, silent in rows
            if (bound := may_take(scenario, kind, step, status)) is not None]
    return [seconds for seconds in left if seconds > 0]


def may_take(scenario: Scenario, kind: str, step: str, status: str) -> float | None:
    """How long the pipeline may still be working on a row in this state; None: it is at rest. A failed row may
    still be retried (the deployment retries failed variants), so it is at rest only past its step's bound."""
    definition = scenario.definition
    if not definition.has(step):
        return None
    if status != "done":
        return bound(scenario, step)
    last = definition.names[-1] if kind == "j" else definition.last_variant_step
    if step == last:
        return None
    following = definition.next_step(step)
    if following is None or (kind == "v" and definition.level(following) == "job"):
        return None
    return bound(scenario, following)


def bound(scenario: Scenario, step: str) -> float:
    """The longest the pipeline may take over one step: the definition's bound, or the scenario's limit if it is
    longer (a scenario's tighter limit judges the pipeline; it does not make the pipeline stop working)."""
    return max(scenario.definition.step(step).timeout, scenario.timeouts.for_step(step))

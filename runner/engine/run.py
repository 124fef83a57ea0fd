"""Running one scenario: plan -> seed -> (simulate img_gen) -> observe -> assert -> report -> cleanup.

One loop on one thread: it creates jobs when the mode says so, writes simulated img_gen
states when they are due, enforces deadlines, judges finished jobs, and otherwise waits on
the observer (which wakes on NOTIFY). An interrupt stops job creation and observation; the
partial result marks unfinished jobs, and the cleanup policy is still applied. Seeding is one
transaction per job, so no job is ever half-seeded.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from array import array
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import platformdirs
import psycopg2
import psycopg2.extensions

from runner import bugs
from runner.db import catalog as catalog_module, cleanup, failures, images, liveness, registry, requirements
from runner.db.failures import ConnectionLost
from runner.db.connect import Database, StatementCounter
from runner.db.seed import Seeder
from runner.durations import format_seconds
from runner.engine import checks, messages, plan as plan_module
from runner.engine.events import (AssertionFailed, CleanupFinished, Emitter, JobFinished, JobRef, JobSeeded, Note,
                                  ScenarioFinished, ScenarioRef, ScenarioStarted, TransitionObserved)
from runner.engine.teardown import Housekeeping, retry_timeout
from runner.engine.results import JobResult, Outcome, ScenarioResult, add_latencies, summarise
from runner.engine.schedule import JobSchedule
from runner.engine.simulate import ImgGenSimulator
from runner.trace import Failure, Transition, VariantTrace
from runner.engine.tracker import Tracker
from runner.errors import InfrastructureError, InputError, Refused, Unavailable, YeRunError
from runner.observe.hub import ListenHub
from runner.observe.observer import ObserveSettings, Observer
from runner.pipeline.host import PipelineHost
from runner.pipeline.scope import Scope
from runner.scenario.model import Scenario

TICK = 0.2
"""The longest the loop waits before looking at the clock again (interrupts, deadlines)."""
RETRY_CONNECT_TIMEOUT = 3
"""Seconds a connection attempt may take while the run waits for a lost server (libpq's minimum is 2)."""
CHECK_EVERY = 0.1
"""Deadlines are enforced this often: the loop's cost must not grow with the jobs in flight."""


@dataclass(frozen=True)
class RunSettings:
    observe: Literal["auto", "history", "listen"] = "auto"
    variant_channel: str = requirements.VARIANT_CHANNEL
    job_channel: str = requirements.JOB_CHANNEL
    tenant_pattern: str | None = None
    force: bool = False
    asset_dir: Path = field(default_factory=lambda: platformdirs.user_cache_path("ye-run") / "assets")
    asset_base_url: str | None = None
    reference_pipeline: bool = False
    """Run the built-in reference pipeline in-process (the embedded default)."""
    job_settle: float = 5.0
    """How long the job row may lag behind its last variant before its state counts as wrong."""
    heartbeat: float = 5.0
    reconcile: float = 2.0
    reconnect_window: float = 30.0
    """How long the run waits for a lost database to come back before it ends with an error."""
    cleanup_wait: float = 30.0
    """The longest cleanup waits for a pipeline to finish with the jobs; past it the rows are kept."""
    worker: str = ""
    """The session worker running the scenario (reports name it)."""


class ScenarioRun:
    def __init__(self, scenario: Scenario, database: Database, settings: RunSettings, emit: Emitter,
                 stop: threading.Event | None = None, hurry: threading.Event | None = None,
                 hub: ListenHub | None = None):
        self.scenario = scenario
        self.hub = hub
        """The session's LISTEN connection, shared by its scenarios; None: the run opens one of its own."""
        self.database = database
        self.settings = settings
        self.emit = emit
        self.stop = stop or threading.Event()
        self.hurry = hurry or threading.Event()
        """Set by a second signal: no cleanup from now on; one under way is cancelled."""
        self._holders: list = []  # type: ignore[type-arg]
        """What holds the run's connection (the seeder, the simulator): handed the new one after a reconnect."""
        run_id = registry.new_run_id()
        tenant = registry.isolated_tenant(scenario.tenant.id, run_id) if scenario.tenant.isolate else scenario.tenant.id
        self.result = ScenarioResult(scenario.name, str(scenario.path), run_id,
                                     record=registry.RunRecord(run_id, scenario.name, tenant),
                                     cleanup_policy=scenario.cleanup, database=database.display,
                                     embedded=database.embedded, worker=settings.worker)
        self.ref = ScenarioRef(scenario.name, run_id, settings.worker)
        self.housekeeping = Housekeeping(scenario, self.result, emit, self.ref, self.hurry, self._usable_conn,
                                         self._close, settings.reconnect_window, settings.cleanup_wait,
                                         waits_for_pipeline=not settings.reference_pipeline, registered=False)
        self._job_refs: dict[str, JobRef] = {}
        """The jobs in flight, as events name them (dropped once judged: memory stays flat over a long run)."""
        self._latencies: dict[str, array[float]] = {}
        """Per step, the latencies of every job judged so far (its traces may be on disk by the end)."""
        self.tracker = Tracker(scenario)
        self.error: YeRunError | None = None
        self.conn: psycopg2.extensions.connection | None = None
        self.observer: Observer | None = None
        self._host: PipelineHost | None = None
        self.has_registry = False
        self.statements = StatementCounter()
        self._settle: dict[str, float] = {}
        self._touched: set[str] = set()
        """Jobs with news since the loop last looked: the only candidates for judging."""
        self._next_check = 0.0
        self._next_heartbeat = math.inf
        self._deadline: float | None = None

    # --- the whole run ------------------------------------------------------------------

    def execute(self) -> ScenarioResult:
        """Run the scenario; YeRunErrors end it with outcome 'error' (the CLI decides the exit code)."""
        result = self.result
        result.started_at = datetime.now(timezone.utc)
        started = time.monotonic()
        assert result.record is not None
        self.emit(ScenarioStarted(self.ref, self.database.display, self.database.embedded, result.record.tenant_id,
                                  self.scenario.expect.steps + self.scenario.expect.job_steps))
        try:
            result.plan = plan_module.build(self.scenario, self.database.display)
            with contextlib.ExitStack() as stack:
                self._run(stack)
        except YeRunError as exc:
            self._errored(exc)
        except psycopg2.Error as exc:
            self._errored(failures.describe(exc))
        except Exception as exc:  # a bug: never a pass, and the reports are still written
            self._errored(bugs.record(exc, f"running scenario {self.scenario.name!r}"))
        finally:
            result.duration = time.monotonic() - started
            result.statements = self.statements.count
            result.finished_at = datetime.now(timezone.utc)
            result.outcome = self._outcome()
            for job in result.jobs.in_memory():  # a job the run could not finish is never reported as if it passed
                if job.outcome == "running":
                    job.outcome = "interrupted" if result.outcome == "interrupted" else "error"
            self._finish_registry()
            self.emit(ScenarioFinished(result))  # the verdict first: cleanup never holds it back
            self.housekeeping.apply()
            result.cleanup_error = None if self.housekeeping.error is None else str(self.housekeeping.error)
            self._close()
            self.emit(CleanupFinished(self.ref, result))
        return result

    def _errored(self, exc: YeRunError) -> None:
        """The scenario could not finish: its outcome is 'error' in every report, whatever was checked."""
        if self.error is None:
            self.error = exc
            self.result.error = str(exc)
        self.result.outcome = "error"

    def prepare(self, conn: psycopg2.extensions.connection,
                stack: contextlib.ExitStack) -> tuple[catalog_module.Catalog, Seeder, Literal["history", "listen"] | None]:
        """Every check that needs the database, before the first write: the catalog, the image, the tenant guard,
        the seed's pre-check, the SQL checks against the catalog, how to observe. Writes nothing."""
        scenario, settings = self.scenario, self.settings
        snapshot = catalog_module.read(conn)
        record = self.result.record
        assert record is not None
        source = images.first_existing(scenario.images, scenario.at("$.images"))
        chosen = f"$.images[{scenario.images.index(source)}]" if scenario.source.marks.get("$.images") else "$.images"
        try:
            stored = images.store(source, settings.asset_dir, settings.asset_base_url)
        except InputError as exc:
            raise InputError(f"{scenario.at(chosen)}: {exc}") from None
        self.has_registry = requirements.registry_available(snapshot)
        seeder = Seeder(conn, snapshot, scenario, record, stored, self.has_registry, settings.tenant_pattern,
                        settings.force)
        for text in seeder.notes:  # a seed row skipped where the target has no such table
            self.emit(Note(self.ref, text))
        self.sql_session = checks.CheckSession(self.database, self.statements.cursor_factory())
        stack.callback(self.sql_session.close)
        if scenario.expect.sql:
            self.sql_session.precheck(scenario.expect.sql)  # the catalog's word, before anything is seeded
        return snapshot, seeder, self._method(snapshot) if scenario.observe else None

    def _run(self, stack: contextlib.ExitStack) -> None:
        scenario, settings = self.scenario, self.settings
        conn = self.database.connect("ye-run", cursor_factory=self.statements.cursor_factory())
        self.conn = conn  # held to the end, cleanup and verdict included: its lock tells cleaners the run is alive
        record = self.result.record
        assert record is not None
        snapshot, seeder, method = self.prepare(conn, stack)
        self.housekeeping.registered = self.has_registry
        if self.has_registry:
            registry.start(conn, record, settings.reconnect_window + 2 * liveness.HEARTBEAT)
            self._next_heartbeat = time.monotonic() + liveness.HEARTBEAT
        else:  # no registry: the locks alone keep `cleanup --tenant` and other runs' tenant cleanup off
            registry.claim(conn, record, registered=False)
        if method is None:
            self._seed_only(seeder)
            return
        observer = Observer(self.database, ObserveSettings(method, settings.variant_channel, settings.job_channel,
                                                           settings.heartbeat, settings.reconcile),
                            cursor_factory=self.statements.cursor_factory(), hub=self.hub)
        observer.start()
        stack.callback(observer.close)
        self.observer = observer
        self.result.observation = observer.report
        host = self._pipeline(stack)
        self._host = host
        simulator = ImgGenSimulator(conn, snapshot, scenario.simulate_img_gen, scenario.definition.simulated_step,
                                    scenario.definition.seed) \
            if scenario.simulate_img_gen.enabled and scenario.definition.simulated_step else None
        self._holders = [seeder] + ([simulator] if simulator is not None else [])
        self._loop(seeder, observer, host, simulator)
        self._latency()
        if host is not None:
            self.result.pipeline_restarts = host.restarts

    def _method(self, snapshot: catalog_module.Catalog) -> Literal["history", "listen"]:
        wanted = self.settings.observe
        available = requirements.history_available(snapshot)
        if wanted == "history" and not available:
            raise InfrastructureError("--observe history: this database has no ye-run history table "
                                      "(install it with `ye-run db init`)")
        if not snapshot.notifies("jobs_variants", self.settings.variant_channel):
            raise InfrastructureError(f"no trigger on jobs_variants notifies channel "
                                      f"{self.settings.variant_channel!r}; `ye-run db check` shows what is missing")
        return "history" if available and wanted != "listen" else "listen"

    def _pipeline(self, stack: contextlib.ExitStack) -> PipelineHost | None:
        if not self.settings.reference_pipeline:
            return None
        config = self.scenario.reference_pipeline
        if self.scenario.start == self.scenario.definition.seed and not self.scenario.simulate_img_gen.enabled:
            config = replace(config, with_ye=True)
        host = PipelineHost(self.database, config, Scope.jobs(), definition=self.scenario.definition)
        host.start()
        stack.callback(host.stop)
        return host

    # --- the loop -----------------------------------------------------------------------

    def _loop(self, seeder: Seeder, observer: Observer, host: PipelineHost | None,
              simulator: ImgGenSimulator | None) -> None:
        schedule = JobSchedule(self.scenario.mode, time.monotonic())
        reconnects = 0
        while True:
            now = time.monotonic()
            if self.stop.is_set():
                self._interrupted()
                break
            if schedule.due(now, self.tracker.in_flight()):
                self._seed(seeder, observer, host, simulator, now)
                schedule.created_one(now)
                continue
            try:
                self._heartbeat(now)
            except ConnectionLost as exc:
                self._reconnect(exc)
                continue
            if simulator is not None:
                try:
                    simulator.run_due(now)
                except ConnectionLost as exc:
                    self._reconnect(exc)
                    continue
            if now >= self._next_check:
                for failure in self.tracker.enforce(now):
                    self._failed(failure)
                    self._touched.add(failure.job_id or "")
                self._deadline = self.tracker.next_deadline()
                self._next_check = now + CHECK_EVERY
            try:
                self._judge_ready(observer, now)
            except ConnectionLost as exc:
                self._reconnect(exc)
                continue
            if schedule.exhausted(now) and not self.tracker.in_flight():
                break
            grace = self.scenario.timeouts.grace
            wake = [t for t in (schedule.next_time(now), simulator.next_time() if simulator else None,
                                self._deadline, self._next_check if self.tracker.in_flight() else None,
                                *self._settle.values(), *(at + grace for at in self.tracker.decisions().values()))
                    if t is not None]
            timeout = min([TICK] + [max(0.0, t - now) for t in wake])
            self._apply(observer.poll(timeout))
            if observer.report.reconnects != reconnects:
                reconnects = observer.report.reconnects
                self.emit(Note(self.ref, f"observer reconnected ({reconnects}); caught up"))
        self.result.delayed_creations = schedule.delayed
        if schedule.delayed:
            self.emit(Note(self.ref, f"{schedule.delayed} job creation(s) waited for max_in_flight"))

    def _seed(self, seeder: Seeder, observer: Observer, host: PipelineHost | None,
              simulator: ImgGenSimulator | None, now: float) -> None:
        ordinal, ids = len(self.result.jobs) + 1, seeder.new_ids()
        while True:
            try:
                seeded = seeder.seed_job(ordinal, ids)
                break
            except ConnectionLost as exc:
                self._reconnect(exc)
                found = seeder.adopt_if_committed(ordinal, ids)  # committed before the loss? read back, once
                if found is not None:
                    seeded = found
                    break
        wall, mono = datetime.now(timezone.utc), time.monotonic()
        job = JobResult(seeded, wall, mono, {v.id: VariantTrace(v.id, v.creation_order) for v in seeded.variants})
        self.result.jobs.append(job)
        self.tracker.add(job)
        self._next_check = 0.0
        self.emit(JobSeeded(self.ref, self._job_ref(job)))
        seed_state = (self.scenario.start, "done")
        self._apply(observer.track(seeded.job_id, [v.id for v in seeded.variants], seed_state, wall, mono))
        if host is not None:
            host.scope.add(seeded.job_id)
        if simulator is not None:
            simulator.schedule(seeded, now)

    def _reconnect(self, why: YeRunError) -> None:
        """The run's connection is gone: wait for the server, within --reconnect-window, then hand every holder a
        new connection. Past the window the run ends with the error (exit 3), its report written."""
        window = self.settings.reconnect_window
        started = time.monotonic()
        backoff, next_note = 0.1, started
        while True:
            now = time.monotonic()
            if now >= next_note:
                self.emit(Note(self.ref, f"database unreachable, retrying ({format_seconds(now - started)} of "
                                         f"{format_seconds(window)}): {why}"))
                next_note = now + 5.0
            try:
                conn = self._reopen(retry_timeout(started + window - now))
                break
            except InfrastructureError as exc:
                if now - started >= window or self.stop.is_set():
                    raise InfrastructureError(f"the database was unreachable for {format_seconds(now - started)} "
                                              f"(--reconnect-window {format_seconds(window)}): {exc}") from None
                time.sleep(min(backoff, max(0.05, started + window - now)))
                backoff = min(backoff * 2, 2.0)
        if self.conn is not None:
            with contextlib.suppress(psycopg2.Error):
                self.conn.close()
        self.conn = conn
        for holder in self._holders:
            holder.conn = conn
        self.result.reconnects += 1
        self.emit(Note(self.ref, f"reconnected after {format_seconds(time.monotonic() - started)}; the run goes on"))

    def _reopen(self, connect_timeout: int | None) -> psycopg2.extensions.connection:
        """A new connection for the run, holding the run's lock again (a cleaner must still see the run alive)."""
        conn = self.database.connect("ye-run", cursor_factory=self.statements.cursor_factory(),
                                     **({"connect_timeout": connect_timeout} if connect_timeout else {}))
        assert self.result.record is not None
        try:
            ours = registry.claim(conn, self.result.record, registered=self.has_registry)
        except psycopg2.Error as exc:
            conn.close()
            raise failures.describe(exc, "taking the run's lock again") from None
        if not ours:  # not a lost connection: the run cannot go on, and says why
            conn.close()
            raise InfrastructureError("while this run was reconnecting, a cleaner removed it (its registry entry "
                                      "is gone or marked cleaned): its rows cannot be trusted; the run ends here")
        return conn

    def _usable_conn(self, connect_timeout: int | None) -> psycopg2.extensions.connection:
        """The run's connection, out of any transaction an error left open; reopened (lock and all) if lost."""
        if self.conn is not None:
            try:
                self.conn.rollback()
                return self.conn
            except psycopg2.Error:
                self._close()
        self.conn = self._reopen(connect_timeout)
        return self.conn

    def _heartbeat(self, now: float) -> None:
        """A sign of life in the registry, for cleaners on other hosts (they cannot see this process)."""
        if not self.has_registry or now < self._next_heartbeat:
            return
        self._next_heartbeat = now + liveness.HEARTBEAT
        try:
            registry.heartbeat(self._writer, self.result.run_id)
        except psycopg2.Error as exc:
            with contextlib.suppress(psycopg2.Error):
                self._writer.rollback()
            raise failures.describe(exc, "recording a sign of life") from None

    def _close(self) -> None:
        """The run's connection goes last: closing it releases the run's lock, so cleaners may now see it finished."""
        if self.conn is not None:
            with contextlib.suppress(psycopg2.Error):
                self.conn.close()
            self.conn = None

    def _job_ref(self, job: JobResult) -> JobRef:
        ref = self._job_refs.get(job.job_id)
        if ref is None:
            ref = JobRef(job.ordinal, job.job_id, job.seeded.tenant_id, len(job.seeded.variants), job.seeded_mono)
            self._job_refs[job.job_id] = ref
        return ref

    def _apply(self, transitions: list[Transition]) -> None:
        for job, transition, order in self.tracker.apply(transitions):
            self._touched.add(job.job_id)
            self.emit(TransitionObserved(self.ref, self._job_ref(job), transition, order))

    def _failed(self, failure: Failure) -> None:
        job = self.tracker.unjudged_job(failure.job_id) if failure.job_id else None  # a job's failures come first
        if job is None:
            self.result.failures.append(failure)
        elif self.scenario.expect.detection_for(failure.kind, failure.step, failure.creation_order):
            job.detected.append(failure)  # expect.detect: the checker was meant to catch this
            self.emit(Note(self.ref, f"detected, as expected: {failure.message}"))
            return
        else:
            job.failures.append(failure)
        self.emit(AssertionFailed(self.ref, failure))

    def _missing_detections(self, job: JobResult) -> None:
        """expect.detect: every declared detection must have happened in every job."""
        for detection in self.scenario.expect.detect:
            if not any(detection.matches(f.kind, f.step, f.creation_order) for f in job.detected):
                self._failed(messages.job_failure(self.scenario.name, job.ordinal, job.job_id, "detection_missing",
                                                  f"expected the checker to report {detection}; it did not"))

    # --- judging a job ------------------------------------------------------------------

    def _judge_ready(self, observer: Observer, now: float) -> None:
        grace = self.scenario.timeouts.grace
        due = [job_id for job_id, at in self.tracker.decisions().items() if now >= at + grace]
        candidates = self._touched | set(self._settle) | set(due)
        if not observer.caught_up:  # a trace may be missing writes made while the connection was gone: wait
            self._touched = candidates
            return
        self._touched = set()
        for job_id in candidates:
            job = self.tracker.unjudged_job(job_id)
            if job is None or not self.tracker.finished(job.job_id):
                self._settle.pop(job_id, None)  # the job row's lane started: the settle window waits for it
                if job is not None and self.tracker.decided(job_id, now, grace):
                    self._judge_early(job, observer)
                continue
            if job.job_id not in self._settle:
                fresh = observer.refresh(job.job_id)
                if fresh is None:
                    self._touched.add(job_id)
                    continue
                self._apply(fresh)
                if not self.tracker.finished(job.job_id):
                    continue
                self._settle[job.job_id] = min(now + self.settings.job_settle,
                                               job.seeded_mono + self.scenario.timeouts.job)
            acceptable = self.tracker.acceptable_job_states(job.job_id)
            rows = self._read(lambda: checks.job_rows(self._writer, job.job_id))
            if acceptable and rows.state not in acceptable and now < self._settle[job.job_id]:
                continue
            self._judge(job, rows, acceptable)

    def _judge_early(self, job: JobResult, observer: Observer) -> None:
        """The job has failed for certain and its grace is over: judge it now, on what its rows show, rather
        than wait for the rest of its run (or its timeouts). Its final state and checks are not judged."""
        fresh = observer.refresh(job.job_id)
        if fresh is None:  # the connection is gone: judged once it is back and the trace is whole
            return
        self._apply(fresh)
        self._sequence_failures(job)
        self.emit(Note(self.ref, f"job {job.ordinal} judged {format_seconds(self.scenario.timeouts.grace)} after "
                                 f"its first failure (timeouts.grace); what it did later was not waited for"))
        self._conclude(job, early=True)

    def _sequence_failures(self, job: JobResult) -> None:
        """The job's trace problems, in the order they happened: the root cause first."""
        found = self.tracker.new_failures(job.job_id) + self.tracker.final_variant_failures(job.job_id)
        for failure in sorted(found, key=lambda f: (f.seen_mono is None, f.seen_mono or 0.0)):
            self._failed(failure)

    def _judge(self, job: JobResult, rows: checks.JobRows, acceptable: list[tuple[str, str]]) -> None:
        # The SQL checks read first: if the database goes away there, nothing is recorded and the job is judged
        # again after the reconnect.
        sql_failures = self._read(lambda: checks.sql_checks(self.sql_session, self.scenario, job))
        del self._settle[job.job_id]
        state = rows.state
        job.final_state = state
        # Sequence problems are reported once the job's traces are complete, so every diff is whole.
        self._sequence_failures(job)
        if acceptable and state not in acceptable:
            wanted = " or ".join(f"({s}, {st})" for s, st in acceptable)
            got = f"({state[0]}, {state[1]})" if state else "no job row"
            self._failed(messages.job_failure(self.scenario.name, job.ordinal, job.job_id, "job_final_state",
                                              f"job row ended {got}; expected {wanted}"))
        for failure in checks.integrity(rows, self.scenario, job):
            self._failed(failure)
        for failure in sql_failures:
            self._failed(failure)
        self._conclude(job)

    def _conclude(self, job: JobResult, early: bool = False) -> None:
        job.finished_at = datetime.now(timezone.utc)
        job.finished_mono = time.monotonic()
        if not early:  # a detection may still have come: only a job that ran to its end can miss one
            self._missing_detections(job)
        job.retries = self.tracker.retries(job.job_id)
        job.outcome = "failed" if job.failures else "passed"
        self._done_with(job)
        if self.observer is not None:
            self.observer.untrack(job.job_id)

    def _done_with(self, job: JobResult) -> None:
        """The job is judged: it is reported, measured, and no longer held in memory by the run."""
        self.tracker.mark_judged(job.job_id)
        self.emit(JobFinished(self.ref, self._job_ref(job), job.outcome, job.duration, len(job.failures)))
        add_latencies(self._latencies, job, frozenset(self.scenario.definition.job_names))
        self._job_refs.pop(job.job_id, None)
        self.result.jobs.judged(job)
        if self._host is not None and job.outcome == "passed":  # a failed job's rows stay driven, as a pipeline would
            self._host.scope.discard(job.job_id)

    @property
    def _writer(self) -> psycopg2.extensions.connection:
        assert self.conn is not None
        return self.conn

    def _read(self, read):  # type: ignore[no-untyped-def]
        try:
            return read()
        except psycopg2.Error as exc:
            raise failures.describe(exc, "reading the job's rows") from None

    def _interrupted(self) -> None:
        for job in self.tracker.unjudged():
            for failure in self.tracker.new_failures(job.job_id):
                self._failed(failure)
            job.outcome = "interrupted"
            self._done_with(job)

    # --- the end ------------------------------------------------------------------------

    def _latency(self) -> None:
        self.result.latency = summarise(self._latencies)
        for step, limits in self.scenario.expect.latency:
            measured = self.result.latency.get(step)
            if measured is None:
                continue
            for name in ("p50", "p95", "max"):
                limit = getattr(limits, name)
                actual = getattr(measured, name)
                if limit is not None and actual > limit:
                    self._failed(Failure("latency_limit", f"{self.scenario.name} › {step}: {name} latency "
                                         f"{format_seconds(actual)} is over the limit {format_seconds(limit)} "
                                         f"(n={measured.n})", step=step, spent=actual, limit=limit))

    def _seed_only(self, seeder: Seeder) -> None:
        """observe: false — create the jobs the mode asks for and leave them (the original --once)."""
        schedule = JobSchedule(self.scenario.mode, time.monotonic())
        while not schedule.exhausted(time.monotonic()) and not self.stop.is_set():
            now = time.monotonic()
            self._heartbeat(now)
            if schedule.due(now, 0):
                seeded = seeder.seed_job(schedule.created + 1)
                job = JobResult(seeded, datetime.now(timezone.utc), now, {})
                job.outcome = "seeded"
                self.result.jobs.append(job)
                self.emit(JobSeeded(self.ref, self._job_ref(job), seed_only=True))
                self._job_refs.pop(job.job_id, None)
                self.result.jobs.judged(job)
                schedule.created_one(now)
                continue
            wake = schedule.next_time(now)
            self.stop.wait(min(TICK, max(0.0, (wake or now) - now)))
        self.result.outcome = "interrupted" if self.stop.is_set() else "seeded"

    def _outcome(self) -> str:
        if self.result.outcome in ("error", "seeded"):
            return self.result.outcome
        if self.stop.is_set():
            return "interrupted"
        return "failed" if self.result.jobs.has_failures() or self.result.failures else "passed"

    def _finish_registry(self) -> None:
        record = self.result.record
        if record is None or not self.has_registry:
            return
        try:
            quick = RETRY_CONNECT_TIMEOUT if self.hurry.is_set() else None  # a second signal
            registry.finish(self._usable_conn(quick), record, self.result.outcome)
        except (InfrastructureError, psycopg2.Error):
            self.emit(Note(self.ref, f"the run registry could not record the verdict (database unreachable): "
                                     f"`ye-run runs` will show run {record.run_id} with no verdict; its rows are "
                                     f"still found by ye-run cleanup --run {record.run_id}"))

    def cut_cleanup_short(self) -> None:
        """From another thread (a second signal): cancel the cleanup statement under way, if any."""
        self.housekeeping.cut_short()


def preflight(scenarios: list[Scenario], database: Database, settings: RunSettings) -> dict[int, str]:
    """Prepare every scenario before any runs, so a refusal (a guard, a catalog check, an image) stops the whole
    suite before anything is seeded, like a validation error; raises one error listing them all. Returns, by
    position, why a scenario is not run here: the target lacks a table it needs (with nothing like it)."""
    refusals: list[YeRunError] = []
    unavailable: dict[int, str] = {}
    with contextlib.closing(database.connect("ye-run preflight")) as conn:
        for index, scenario in enumerate(scenarios):
            with contextlib.ExitStack() as stack:
                try:
                    ScenarioRun(scenario, database, settings, Emitter()).prepare(conn, stack)
                except Unavailable as exc:
                    unavailable[index] = f"not run: {exc}"
                except YeRunError as exc:
                    refusals.append(exc)
                except psycopg2.Error as exc:
                    refusals.append(failures.describe(exc, f"checking scenario {scenario.name!r}"))
                finally:
                    with contextlib.suppress(psycopg2.Error):
                        conn.rollback()
    if refusals:
        raise Refused(refusals)
    return unavailable

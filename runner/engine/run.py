"""Running one scenario: plan -> seed -> (simulate img_gen) -> observe -> assert -> report -> cleanup.

One loop on one thread: it creates jobs when the mode says so, writes simulated img_gen
states when they are due, enforces deadlines, judges ready jobs, and otherwise waits on the
observer (which wakes on NOTIFY). An interrupt stops job creation and observation; the partial
result marks unfinished jobs, and the cleanup policy is still applied. Seeding is one
transaction per job, so no job is ever half-seeded. The parts are their own objects:
`prepare` (checks before the first write), `RunConnection` (the run's connection and its lock),
`Verdict` (where findings go), `Judge` (when and how a job is judged), `Housekeeping` (cleanup).
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import replace
from collections.abc import Callable
from datetime import datetime, timezone

import psycopg2

from runner import bugs
from runner.db import failures, registry
from runner.db.registry import SeededJob
from runner.db.connect import Database, StatementCounter
from runner.db.failures import ConnectionLost
from runner.db.reconnect import Notified
from runner.db.reconnect import CONNECT_TIMEOUT
from runner.db.seed import JobIds, LockBusy, Seeder
from runner.engine import plan as plan_module
from runner.engine.connection import RunConnection
from runner.engine.events import CleanupFinished, Emitter, JobSeeded, Note, ScenarioFinished, ScenarioRef, \
    ScenarioStarted
from runner.engine.judge import Judge
from runner.engine.prepare import Prepared, prepare, preflight
from runner.engine.results import JobResult, Outcome, ScenarioResult
from runner.engine.schedule import JobSchedule
from runner.engine.settings import RunSettings
from runner.engine.simulate import ImgGenSimulator
from runner.engine.teardown import Housekeeping
from runner.engine.tracker import Tracker
from runner.engine.verdict import Verdict
from runner.errors import InfrastructureError, YeRunError
from runner.observe.hub import ListenHub
from runner.observe.observer import ObserveSettings, Observer
from runner.pipeline.host import PipelineHost
from runner.pipeline.scope import Scope
from runner.scenario.model import Scenario
from runner.trace import VariantTrace

__all__ = ["RunSettings", "ScenarioRun", "preflight"]
TICK = 0.2
"""The longest the loop waits before looking at the clock again (interrupts, deadlines)."""
CHECK_EVERY = 0.1
"""Deadlines are enforced this often: the loop's cost must not grow with the jobs in flight."""
COALESCE = 0.005
"""History reads while writes stream in: at most one per this many seconds (a burst is one read, not one per
notification); a state a job may be judged in is read at once, so the verdict is not held back."""


class ScenarioRun:
    def __init__(self, scenario: Scenario, database: Database, settings: RunSettings, emit: Emitter,
                 stop: threading.Event | None = None, hurry: threading.Event | None = None,
                 hub: ListenHub | None = None):
        self.scenario = scenario
        self.database = database
        self.settings = settings
        self.emit = emit
        self.stop = stop or threading.Event()
        self.hurry = hurry or threading.Event()
        """Set by a second signal: no cleanup from now on; one under way is cancelled."""
        self.hub = hub
        """The session's LISTEN connection, shared by its scenarios; None: the run opens one of its own."""
        record = registry.new_record(scenario.name, scenario.tenant.id, scenario.tenant.isolate)
        self.result = ScenarioResult(scenario.name, str(scenario.path), record.run_id, record=record,
                                     cleanup_policy=scenario.cleanup, database=database.display,
                                     embedded=database.embedded, worker=settings.worker,
                                     description=scenario.description)
        self.ref = ScenarioRef(scenario.name, record.run_id, settings.worker)
        self.statements = StatementCounter()
        self.tracker = Tracker(scenario)
        self.verdict = Verdict(scenario, self.result, self.tracker, emit, self.ref)
        self.connection = RunConnection(database, self.statements, record, emit, self.ref)
        self.judge = Judge(scenario, settings, self.result, self.tracker, self.verdict, self.connection, emit,
                           self.ref)
        self.housekeeping = Housekeeping(scenario, self.result, emit, self.ref, self.hurry, self.connection.usable,
                                         self.connection.close, settings.reconnect_window, settings.cleanup_wait,
                                         waits_for_pipeline=not settings.reference_pipeline, registered=False)
        self.observer: Observer | None = None
        self._host: PipelineHost | None = None
        self._next_check = 0.0
        self._deadline: float | None = None

    @property
    def error(self) -> YeRunError | None:
        return self.verdict.error

    # --- the whole run ------------------------------------------------------------------

    def execute(self) -> ScenarioResult:
        """Run the scenario; YeRunErrors end it with outcome 'error' (the CLI decides the exit code). The verdict is
        reported first; cleanup follows, with its own event."""
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
            self.verdict.errored(exc)
        except psycopg2.Error as exc:
            self.verdict.errored(failures.describe(exc))
        except Exception as exc:  # a bug: never a pass, and the reports are still written
            self.verdict.errored(bugs.record(exc, f"running scenario {self.scenario.name!r}"))
        finally:
            self._conclude(started)
        return result

    def _conclude(self, started: float) -> None:
        result = self.result
        result.duration = time.monotonic() - started
        result.statements = self.statements.count
        result.finished_at = datetime.now(timezone.utc)
        result.reconnects = self.connection.reconnects
        result.outcome = self.verdict.outcome(self.stop.is_set())
        for job in result.jobs.in_memory():  # a job the run could not finish is never reported as if it passed
            if job.outcome == Outcome.RUNNING:
                job.outcome = Outcome.INTERRUPTED if result.outcome == Outcome.INTERRUPTED else Outcome.ERROR
        self._finish_registry()
        self.emit(ScenarioFinished(result))  # the verdict first: cleanup never holds it back
        self.housekeeping.apply()
        result.cleanup_error = None if self.housekeeping.error is None else str(self.housekeeping.error)
        self.connection.close()
        self.emit(CleanupFinished(self.ref, result))

    def _run(self, stack: contextlib.ExitStack) -> None:
        conn = self.connection.open()  # held to the end, cleanup and verdict included: its lock says the run lives
        assert self.result.record is not None
        prepared = prepare(conn, self.scenario, self.database, self.settings, self.result.record, self.statements,
                           lambda text: self.emit(Note(self.ref, text)))
        stack.callback(prepared.checks.close)
        self.judge.checks = prepared.checks
        self.housekeeping.registered = prepared.registered
        self.connection.register(prepared.registered, self.settings.reconnect_window)
        if prepared.method is None:
            self._seed_only(prepared.seeder)
            return
        observer = self._observer(prepared, stack)
        host = self._pipeline(stack)
        simulator = self._simulator(prepared)
        self.connection.holders = [prepared.seeder] + ([simulator] if simulator is not None else [])
        self._loop(prepared.seeder, observer, host, simulator)
        self.verdict.latency(self.judge.latencies, self.judge.job_latencies)
        if host is not None:
            self.result.pipeline_restarts = host.restarts

    def _observer(self, prepared: Prepared, stack: contextlib.ExitStack) -> Observer:
        settings = self.settings
        assert prepared.method is not None
        observer = Observer(self.database, ObserveSettings(prepared.method, settings.variant_channel,
                                                           settings.job_channel, settings.heartbeat,
                                                           settings.reconcile, coalesce=COALESCE),
                            cursor_factory=self.statements.cursor_factory(), hub=self.hub, urgent=self._settling())
        observer.start()
        stack.callback(observer.close)
        self.observer = self.judge.observer = observer
        self.result.observation = observer.report
        return observer

    def _settling(self) -> Callable[[Notified], bool]:
        """The notifications read at once (the others wait up to COALESCE): a state a job may be judged in."""
        expect = self.scenario.expect
        finals = {(expect.final_variant.step, expect.final_variant.status)}
        if expect.final_job is not None:
            finals.add((expect.final_job.step, expect.final_job.status))
        last = set(expect.steps[-1:]) | set(expect.job_steps[-1:])
        return lambda note: (note.status not in ("running", "done") or (note.step, note.status) in finals
                             or (note.status == "done" and note.step in last))

    def _pipeline(self, stack: contextlib.ExitStack) -> PipelineHost | None:
        if not self.settings.reference_pipeline:
            return None
        config = self.scenario.reference_pipeline
        if self.scenario.start == self.scenario.definition.seed and not self.scenario.simulate_img_gen.enabled:
            config = replace(config, with_ye=True)
        host = PipelineHost(self.database, config, Scope.jobs(), definition=self.scenario.definition)
        host.start()
        stack.callback(host.stop)
        self._host = self.judge.host = host
        return host

    def _simulator(self, prepared: Prepared) -> ImgGenSimulator | None:
        scenario = self.scenario
        if not (scenario.simulate_img_gen.enabled and scenario.definition.simulated_step):
            return None
        return ImgGenSimulator(self.connection.writer, prepared.catalog, scenario.simulate_img_gen,
                               scenario.definition.simulated_step, scenario.definition.seed)

    # --- the loop -----------------------------------------------------------------------

    def _loop(self, seeder: Seeder, observer: Observer, host: PipelineHost | None,
              simulator: ImgGenSimulator | None) -> None:
        schedule = JobSchedule(self.scenario.mode, time.monotonic())
        reconnects = 0
        while True:
            now = time.monotonic()
            if self.stop.is_set():
                self.judge.interrupted()
                break
            if schedule.due(now, self.tracker.in_flight()):
                self._seed(seeder, observer, host, simulator, now)
                schedule.created_one(now)
                continue
            if not self._turn(simulator, now):
                continue
            if schedule.exhausted(now) and not self.tracker.in_flight():
                break
            self.judge.apply(observer.poll(self._timeout(schedule, simulator, now)))
            if observer.report.reconnects != reconnects:
                reconnects = observer.report.reconnects
                self.emit(Note(self.ref, f"observer reconnected ({reconnects}); caught up"))
        self.result.delayed_creations = schedule.delayed
        if schedule.delayed:
            self.emit(Note(self.ref, f"{schedule.delayed} job creation(s) waited for max_in_flight"))

    def _turn(self, simulator: ImgGenSimulator | None, now: float) -> bool:
        """What is due besides seeding: a sign of life, simulated writes, deadlines, judging. False when the run's
        connection was lost (and made again): the loop starts over."""
        try:
            self.connection.heartbeat(now)
            if simulator is not None:
                simulator.run_due(now)
            if now >= self._next_check:
                for failure in self.tracker.enforce(now):
                    self.verdict.failed(failure)
                    self.judge.touched.add(failure.job_id or "")
                self._deadline = self.tracker.next_deadline()
                self._next_check = now + CHECK_EVERY
            self.judge.ready(now)
        except ConnectionLost as exc:
            self.connection.reconnect(exc, self.settings.reconnect_window, self.stop)
            return False
        return True

    def _timeout(self, schedule: JobSchedule, simulator: ImgGenSimulator | None, now: float) -> float:
        """How long the observer may wait: until the next thing due, at most a tick."""
        wake = [t for t in (schedule.next_time(now), simulator.next_time() if simulator else None, self._deadline,
                            self._next_check if self.tracker.in_flight() else None, *self.judge.wake_times())
                if t is not None]
        return min([TICK] + [max(0.0, t - now) for t in wake])

    def _seed(self, seeder: Seeder, observer: Observer, host: PipelineHost | None,
              simulator: ImgGenSimulator | None, now: float) -> None:
        ordinal, ids = len(self.result.jobs) + 1, seeder.new_ids()
        while True:
            try:
                seeded = self._seed_job(seeder, ordinal, ids)
                if seeded is None:
                    return
                break
            except ConnectionLost as exc:
                self.connection.reconnect(exc, self.settings.reconnect_window, self.stop)
                found = seeder.adopt_if_committed(ordinal, ids)  # committed before the loss? read back, once
                if found is not None:
                    seeded = found
                    break
        wall, mono = datetime.now(timezone.utc), time.monotonic()
        job = JobResult(seeded, wall, mono, {v.id: VariantTrace(v.id, v.creation_order) for v in seeded.variants})
        self.result.jobs.append(job)
        self.tracker.add(job)
        self._next_check = 0.0
        self.emit(JobSeeded(self.ref, self.judge.job_ref(job)))
        seed_state = (self.scenario.start, "done")
        self.judge.apply(observer.track(seeded.job_id, [v.id for v in seeded.variants], seed_state, wall, mono))
        if host is not None:
            host.scope.add(seeded.job_id)
        if simulator is not None:
            simulator.schedule(seeded, now)

    def _seed_job(self, seeder: Seeder, ordinal: int, ids: JobIds | None = None) -> SeededJob | None:
        """One job seeded; tried again while another session's lock holds it (each try gives up after a short
        lock_timeout, so an interrupt is seen within seconds, not when the other session lets go). None: the run
        was stopped meanwhile, and nothing of the job was written."""
        noted = False
        while True:
            try:
                return seeder.seed_job(ordinal, ids)
            except LockBusy as busy:
                if self.stop.is_set():
                    return None
                if not noted:
                    self.emit(Note(self.ref, f"job {ordinal}: {busy}; waiting for it"))
                    noted = True
                self.connection.heartbeat(time.monotonic())

    def _seed_only(self, seeder: Seeder) -> None:
        """observe: false — create the jobs the mode asks for and leave them (the original --once)."""
        schedule = JobSchedule(self.scenario.mode, time.monotonic())
        while not schedule.exhausted(time.monotonic()) and not self.stop.is_set():
            now = time.monotonic()
            self.connection.heartbeat(now)
            if schedule.due(now, 0):
                seeded = self._seed_job(seeder, schedule.created + 1)
                if seeded is None:
                    continue
                job = JobResult(seeded, datetime.now(timezone.utc), now, {})
                job.outcome = Outcome.SEEDED
                self.result.jobs.append(job)
                self.emit(JobSeeded(self.ref, self.judge.job_ref(job), seed_only=True))
                self.judge.job_refs.pop(job.job_id, None)
                self.result.jobs.judged(job)
                schedule.created_one(now)
                continue
            wake = schedule.next_time(now)
            self.stop.wait(min(TICK, max(0.0, (wake or now) - now)))
        self.result.outcome = Outcome.INTERRUPTED if self.stop.is_set() else Outcome.SEEDED

    # --- the end ------------------------------------------------------------------------

    def _finish_registry(self) -> None:
        record = self.result.record
        if record is None or not self.connection.registered:
            return
        try:
            quick = CONNECT_TIMEOUT if self.hurry.is_set() else None  # a second signal
            registry.finish(self.connection.usable(quick), record, self.result.outcome)
        except (InfrastructureError, psycopg2.Error) as exc:
            why = "database unreachable" if isinstance(exc, (InfrastructureError, psycopg2.OperationalError)) else \
                str(failures.describe(exc)).splitlines()[0]
            self.emit(Note(self.ref, f"the run registry could not record the verdict ({why}): "
                                     f"`ye-run runs` will show run {record.run_id} with no verdict; its rows are "
                                     f"still found by ye-run cleanup --run {record.run_id}"))

    def cut_cleanup_short(self) -> None:
        """From another thread (a second signal): cancel the cleanup statement under way, if any."""
        self.housekeeping.cut_short()

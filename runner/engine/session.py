"""A run of many scenarios: one database, one preflight, N workers, and events on one thread.

The CLI and the pytest plugin hand over what loading and selection gave (`scenario.suite`, its
error included) and reporters. A refused suite is the session's first event, and nothing opens.
Otherwise the session opens the database once (or uses the one it is given), decides the
reference-pipeline default, checks every scenario against the database before anything is
seeded, then runs up to `parallel` scenarios at once on worker threads. Files that failed to load
are error entries of their own and the valid scenarios still run (one bad file never stops a
night); `--last-failed` and `--shard` narrow the selection once the registry can be read
(`engine.narrow`), and `--reruns` runs a failed scenario again (`engine.reruns`). Workers only put events
on a queue; the calling thread takes them off and hands them to the reporters in order, so no
reporter needs a lock (pytest's LogXML under xdist, and schemathesis' engine, work the same way).
Every reporter is started before the first event and finished after the last, on every exit path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

import psycopg2

from runner import bugs
from runner.db import budget as budget_module, catalog, registry, requirements
from runner.db.connect import Database
from runner.db.target import open_database
from runner.engine import applicable, footprint
from runner.engine.events import Event, Note, Refusal, ScenarioFinished, ScenarioRef, SessionFinished, SessionStarted
from runner.engine.narrow import Narrowed, Narrowing, Shard, narrow
from runner.engine.reruns import Attempts
from runner.engine.results import Outcome, ScenarioResult, Totals, invalid_entries, not_run
from runner.engine.run import RunSettings, ScenarioRun, preflight
from runner.errors import ExitCode, InputError, YeRunError
from runner.observe.hub import ListenHub, Lost
from runner.scenario import suite as suite_module
from runner.scenario.model import Scenario
from runner.scenario.suite import Suite

PRIORITY = [ExitCode.PASSED, ExitCode.FAILED, ExitCode.BAD_INPUT, ExitCode.INFRASTRUCTURE, ExitCode.INTERRUPTED,
            ExitCode.BUG]
"""Worst exit code wins: a bug above an interrupt above a lost database above bad input above a failure."""
PUMP = 0.1


class Reporter(Protocol):
    """What every reporter is: started once, handed every event in order, finished once."""

    def start(self) -> None: ...

    def handle(self, event: Event) -> None: ...

    def finish(self, outcome: SessionOutcome) -> None: ...


@dataclass
class SessionOutcome:
    """What a session did, for the reporters' finish and the exit code."""

    results: list[ScenarioResult] = field(default_factory=list)
    exit_code: int = ExitCode.PASSED
    error: YeRunError | None = None
    ended: dict[str, YeRunError] = field(default_factory=dict)
    """By scenario name: the error that ended a scenario as `error` (the pytest fixture raises it)."""
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    finished: datetime | None = None
    duration: float = 0.0
    shard: Shard | None = None
    """The shard this session ran (`--shard K/N`), for the JSON report."""

    @property
    def totals(self) -> Totals:
        return Totals.of(self.results)


@dataclass(frozen=True)
class SessionOptions:
    database_url: str | None = None
    ephemeral: bool = False
    settings: RunSettings = field(default_factory=RunSettings)
    reference_pipeline: bool | None = None
    """None: on for the embedded server, off for an external one."""
    parallel: int = 1
    fail_fast: bool = False
    max_connections: int | None = None
    """At most this many connections at once (else the budget alone: 20% of the server kept free)."""
    reruns: int = 0
    """Run a failed scenario again up to this many times; a pass on a rerun is flaky."""
    narrowing: Narrowing = field(default_factory=Narrowing)
    """--last-failed and --shard: the selection narrowed by what past runs left."""


class Session:
    def __init__(self, suite: Suite | Sequence[Scenario], options: SessionOptions, reporters: Sequence[Reporter],
                 stop: threading.Event | None = None, hurry: threading.Event | None = None,
                 database: Database | None = None):
        self.suite = suite if isinstance(suite, Suite) else suite_module.of(suite, side_by_side=options.parallel > 1)
        self.scenarios = list(self.suite.scenarios)
        self.database = database
        """Open already (the pytest plugin keeps one per process); None: the session opens and closes its own."""
        self.options = options
        self.reporters = list(reporters)
        self.stop = stop or threading.Event()
        self.hurry = hurry or threading.Event()
        """A second signal: skip what is left of cleanup (the rows are kept), and cut a cleanup under way short."""
        self._running: set[ScenarioRun] = set()
        self._running_lock = threading.Lock()
        self._events: queue.Queue[Event] = queue.Queue()
        self._no_more = threading.Event()
        """Set by --fail-fast after a failed scenario: scenarios not started yet are not run."""
        self._gate: budget_module.Gate | None = None
        self._pending: list[str] = []
        self._close_later: list = []  # type: ignore[type-arg]
        """The connection the gate looks at the server through, closed when the suite is done."""
        self._skip: dict[int, str] = {}
        """By position: why a scenario is not run against this target."""
        self._hub: ListenHub | None = None
        self.budget: budget_module.Budget | None = None
        self._ended: dict[str, YeRunError] = {}
        self._keyboard = False
        """A KeyboardInterrupt reached the pump (a front end with no signal handlers: pytest)."""

    def run(self) -> SessionOutcome:
        """Run the suite; never raises for a scenario's sake. The outcome carries the error that stopped it."""
        outcome = SessionOutcome()
        started = time.monotonic()
        for reporter in self.reporters:
            reporter.start()
        try:
            self._refuse_unrunnable()
            outcome.results = self._run(outcome)
        except YeRunError as exc:
            outcome.error = exc
        except Exception as exc:  # a bug outside a scenario: the reports still say what ran
            outcome.error = bugs.record(exc, "running the scenarios")
        finally:
            self._drain()
            outcome.finished = datetime.now(timezone.utc)
            outcome.duration = time.monotonic() - started
            outcome.exit_code = self._exit_code(outcome)
            self._dispatch(SessionFinished(outcome.totals, outcome.duration, outcome.exit_code,
                                           None if outcome.error is None else str(outcome.error)))
            self._finish_reporters(outcome)
            outcome.ended = dict(self._ended)
        if self._keyboard:  # stopped as the CLI's SIGINT stops a suite; the front end still hears of it
            raise KeyboardInterrupt
        return outcome

    def _refuse_unrunnable(self) -> None:
        """A suite refused before it started (invalid files, a refused selection, an interrupt): said in the first
        event, so every reporter renders it, then raised like any error that stops a session; nothing opens."""
        error = self.suite.error
        if error is not None:
            self._dispatch(SessionStarted(0, self.options.parallel, "", False, refusal=Refusal.of(error)))
            raise error

    def _finish_reporters(self, outcome: SessionOutcome) -> None:
        """Every reporter writes its file; one that cannot (a bad path) does not stop the others, and the run
        says so in one line (exit 2) rather than as a bug."""
        unwritten = []
        for reporter in self.reporters:
            target = getattr(reporter, "path", "a report")
            try:
                reporter.finish(outcome)
            except OSError as exc:
                unwritten.append(f"cannot write {target}: {exc.strerror or exc}")
            except Exception as exc:  # a bug in one reporter: the others still write theirs
                bug = bugs.record(exc, f"writing {target}")
                if outcome.error is None:
                    outcome.error = bug
                outcome.exit_code = max(outcome.exit_code, bug.exit_code, key=PRIORITY.index)
        if unwritten and outcome.error is None:
            outcome.error = InputError("; ".join(unwritten))
            outcome.exit_code = max(outcome.exit_code, ExitCode.BAD_INPUT, key=PRIORITY.index)

    # --- running ------------------------------------------------------------------------

    def _run(self, outcome: SessionOutcome) -> list[ScenarioResult]:
        """Invalid files first, as error entries; then, narrowed, the scenarios (no database opens for none)."""
        invalid = invalid_entries(self.suite.invalid)
        narrowing = self.options.narrowing
        notes: list[str] = []
        if not narrowing.needs_database:
            notes = self._narrow(narrow(self.scenarios, None, narrowing), outcome)
            if not self.scenarios:
                self._dispatch(SessionStarted(len(invalid), self.options.parallel, "", False, tuple(notes)))
                return self._entries(invalid)
        opened = contextlib.nullcontext(self.database) if self.database is not None else \
            open_database(self.options.database_url, self.options.ephemeral, probe=False)
        with opened as database:
            if narrowing.needs_database:
                notes = self._narrow(narrow(self.scenarios, database, narrowing), outcome)
            return self._run_on(database, invalid, notes)

    def _narrow(self, narrowed: Narrowed, outcome: SessionOutcome) -> list[str]:
        """Keep what --last-failed and --shard chose; returns what the console says of it."""
        self.scenarios, outcome.shard = narrowed.scenarios, narrowed.shard
        return narrowed.notes

    def _entries(self, invalid: list[ScenarioResult]) -> list[ScenarioResult]:
        """Each invalid file's entry, handed to the reporters as a verdict is."""
        for result in invalid:
            self._dispatch(ScenarioFinished(result))
        return invalid

    def _run_on(self, database, invalid: list[ScenarioResult],  # type: ignore[no-untyped-def]
                narrowed: list[str]) -> list[ScenarioResult]:
        options = self.options
        wanted = database.embedded if options.reference_pipeline is None else options.reference_pipeline
        settings = dataclasses.replace(options.settings, reference_pipeline=wanted)
        self._skip = {i: why for i, s in enumerate(self.scenarios)
                      if (why := applicable.not_run_here(s, settings.reference_pipeline))}
        runnable = [s for i, s in enumerate(self.scenarios) if i not in self._skip]
        workers = min(options.parallel, max(1, len(self.scenarios)))
        try:
            conn = self._session_connection(database)
            unavailable = preflight(runnable, database, settings, conn)
            conn.rollback()
            conn.autocommit = True  # from here on it reads the server's slots, outside any transaction
            by_position = [i for i in range(len(self.scenarios)) if i not in self._skip]
            self._skip.update({by_position[i]: why for i, why in unavailable.items()})
            notes = [n for n in (self._plan_connections(conn, settings),) if n]
            self._dispatch(SessionStarted(len(self.scenarios) + len(invalid), options.parallel, database.display,
                                          database.embedded, tuple(narrowed + notes + self._pending)))
            self._entries(invalid)
            if any(s.observe for s in self.scenarios):  # the session's connection goes on as the LISTEN one
                self._hub = ListenHub(database, (settings.variant_channel, settings.job_channel), settings.heartbeat)
                self._hub.start(conn)
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scenario") as pool:
                futures = [pool.submit(self._skipped, s, self._skip[i]) if i in self._skip else
                           pool.submit(self._one, s, database, settings) for i, s in enumerate(self.scenarios)]
                self._pump(futures)
                return invalid + [future.result() for future in futures]
        finally:
            if self._hub is not None:
                self._hub.close()
            for close in self._close_later:
                with contextlib.suppress(psycopg2.Error):
                    close()

    def _session_connection(self, database):  # type: ignore[no-untyped-def]
        """The session's one connection of its own, held to the end: it checks every scenario before any is seeded,
        reads the server's slots for the budget, then becomes the LISTEN connection every scenario shares (the
        first to connect: its error is the session's)."""
        conn = database.connect("ye-run session")
        self._close_later.append(conn.close)
        return conn

    def _plan_connections(self, conn, settings: RunSettings) -> str:  # type: ignore[no-untyped-def]
        """Read the server's slots, and hand scenarios connections under the budget (the gate looks at the server
        again while they wait); refuse a scenario that could never fit, even on a server of its own. Returns the
        line the console shows when the budget holds -j back."""
        self.budget = budget_module.Budget.of(budget_module.read(conn), ours=1, cap=self.options.max_connections)
        self._pending = pending_note(conn)
        shared = footprint.SESSION
        running = [s for i, s in enumerate(self.scenarios) if i not in self._skip]
        costs = [footprint.connections(s, settings.reference_pipeline) for s in running]
        worst = max(costs, default=0)
        if worst > self.budget.ceiling - shared:  # it could never fit, even with nobody else on the server
            name = running[costs.index(worst)].name
            raise self.budget.refuse(worst + shared, f"scenario {name!r}")
        self._gate = budget_module.Gate(self.budget.ceiling - shared, self.budget, lambda: self._in_use(conn))
        at_once = max(1, (self.budget.limit - shared) // max(1, worst))
        if self.options.parallel > at_once and len(self.scenarios) > at_once:
            return (f"{self.budget.describe()}: -j {self.options.parallel} runs at most {at_once} scenario(s) at "
                    f"once ({worst} connection(s) each); the others wait their turn")
        return ""

    def _in_use(self, conn) -> int | None:  # type: ignore[no-untyped-def]
        """Every client connection on the server now, read on the session's connection: the hub's once it
        LISTENs on it (None while the hub has none)."""
        if self._hub is None:
            return _in_use(conn)
        try:
            return self._hub.query(_in_use)
        except Lost:
            return None

    def _skipped(self, scenario: Scenario, why: str) -> ScenarioResult:
        """Not run against this target: said in every report, counted as not run."""
        result = not_run(scenario, why)
        self._events.put(ScenarioFinished(result))
        return result

    def _one(self, scenario: Scenario, database, settings: RunSettings) -> ScenarioResult:  # type: ignore[no-untyped-def]
        if self.stop.is_set() or self._no_more.is_set():
            result = not_run(scenario, "interrupted before it started" if self.stop.is_set() else
                             "not run: --fail-fast stopped the suite after a failure")
            self._events.put(ScenarioFinished(result))
            return result
        cost = footprint.connections(scenario, settings.reference_pipeline)
        assert self._gate is not None
        def waiting(seconds: float) -> None:  # called with the gate's lock held: only a queue put
            self._events.put(Note(ScenarioRef(scenario.name, ""), f"waiting {seconds:.0f}s for {cost} connection(s) "
                                  f"under the budget ({self._gate.busy()})"))

        if not self._gate.acquire(cost, self.stop, self._no_more, waiting=waiting):
            return self._one(scenario, database, settings)  # stopped while it waited: not run, said once
        try:
            result, run = self._attempts(scenario, database, settings)
        finally:
            self._gate.release(cost)
        if run.error is not None:
            self._ended[scenario.name] = run.error
        result.exit_code = max(exit_code(result, run.error), run.housekeeping.error.exit_code
                               if run.housekeeping.error is not None else ExitCode.PASSED, key=PRIORITY.index)
        if self.options.fail_fast and result.outcome in (Outcome.FAILED, Outcome.ERROR):
            self._no_more.set()
        return result

    def _attempts(self, scenario: Scenario, database, settings: RunSettings  # type: ignore[no-untyped-def]
                  ) -> tuple[ScenarioResult, ScenarioRun]:
        """The scenario run, and run again after a failure while --reruns allows: the last attempt's result (flaky
        when it passed after a failure) and run."""
        attempts = Attempts(self.options.reruns, self._events.put, self.stop)
        while True:
            run = ScenarioRun(scenario, database, dataclasses.replace(settings, worker=threading.current_thread().name),
                              attempts.emitter(), self.stop, self.hurry, hub=self._hub)
            with self._running_lock:
                self._running.add(run)
            try:
                result = run.execute()
            finally:
                with self._running_lock:
                    self._running.discard(run)
            if not attempts.more(result):
                return attempts.final(result), run
            attempts.record(result)

    def _pump(self, futures: list[Future]) -> None:
        """Hand events to the reporters, on this thread, until every scenario is done."""
        cut_short = False
        while not all(future.done() for future in futures):
            if self.hurry.is_set() and not cut_short:
                cut_short = True
                with self._running_lock:
                    running = list(self._running)
                for run in running:
                    run.cut_cleanup_short()
            try:
                self._dispatch(self._events.get(timeout=PUMP))
            except queue.Empty:
                continue
            except KeyboardInterrupt:
                self._interrupt()
        self._drain()

    def _interrupt(self) -> None:
        """Ctrl+C where no signal handler turns it into `stop` (pytest): the first stops the suite as SIGINT does in
        the CLI; a second also skips what is left of cleanup."""
        self._keyboard = True
        (self.hurry if self.stop.is_set() else self.stop).set()

    def _drain(self) -> None:
        while True:
            try:
                self._dispatch(self._events.get_nowait())
            except queue.Empty:
                return

    def _dispatch(self, event: Event) -> None:
        for reporter in self.reporters:
            reporter.handle(event)

    def _exit_code(self, outcome: SessionOutcome) -> int:
        codes = [r.exit_code for r in outcome.results]
        if self.stop.is_set():
            codes.append(ExitCode.INTERRUPTED)
        if outcome.error is not None:
            codes.append(outcome.error.exit_code)
        return max(codes or [ExitCode.PASSED], key=PRIORITY.index)


def exit_code(result: ScenarioResult, error: YeRunError | None) -> int:
    """A scenario's own exit code: its error's, else what its outcome means."""
    if error is not None:
        return error.exit_code
    return {Outcome.PASSED: ExitCode.PASSED, Outcome.SEEDED: ExitCode.PASSED, Outcome.FLAKY: ExitCode.PASSED,
            Outcome.FAILED: ExitCode.FAILED,
            Outcome.INTERRUPTED: ExitCode.INTERRUPTED, Outcome.NOT_RUN: ExitCode.PASSED}.get(
        Outcome(result.outcome), ExitCode.BUG)


def _in_use(conn) -> int | None:  # type: ignore[no-untyped-def]
    """Every client connection on the server now; None when it cannot be read (the gate then goes by its count)."""
    try:
        return budget_module.read(conn).in_use
    except psycopg2.Error:
        return None


def pending_note(conn) -> list[str]:  # type: ignore[no-untyped-def]
    """One line when earlier runs kept rows the pipeline might still have been working on."""
    if not requirements.registry_available(catalog.read(conn)):
        return []
    try:
        found = registry.pending(conn)
    except psycopg2.Error:  # a role that may not read the registry: the runs themselves will say what it refuses
        conn.rollback()
        return []
    if not found:
        return []
    ready = sum(left <= 0 for _, left in found)
    return [f"{len(found)} earlier run(s) kept rows while the pipeline might still work on them ({ready} ready now): "
            "ye-run cleanup --pending removes them"]

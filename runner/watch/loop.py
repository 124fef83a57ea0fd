"""One watch: the history read forward (without it: the notifications and reconciling reads), each write handed to
the judge, each verdict to the sinks.

One thread, one connection. The loop sleeps until a notification, the next deadline a job has
(on the database's clock), or a second, whichever is first; so its load on the database is one
read per wake-up, whatever the number of jobs in flight.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from runner.db.connect import Database
from runner.definition import DEFAULT, Definition
from runner.watch.judge import REMEMBER, SETTLE, Bounded, JobVerdict, WatchJudge
from runner.watch.output import Totals
from runner.watch.listen import ListenSource
from runner.watch.source import HistorySource, JobFacts, NoHistory, Write

IDLE = 1.0
"""The longest wait between two reads: a lost notification costs at most this much lag."""
ONCE_GAPS = 5.0
"""--once: seconds to wait for writes uncommitted when the window closed before leaving them out."""


@dataclass(frozen=True)
class WatchOptions:
    definition: Definition = DEFAULT
    tenants: tuple[str, ...] = ()
    """Glob patterns (`acme_*`); none: every tenant."""
    since: timedelta | None = None
    once: bool = False
    duration: float | None = None
    max_retries: int = 2
    settle: float = SETTLE
    remember: int = REMEMBER
    read_only: bool = True
    source: str = "auto"
    """history, listen (notifications + reconciling reads), or auto: the history table where there is one."""


class Watch:
    """Run with `run()`; `stop` (an Event) ends it from another thread or a signal handler."""

    def __init__(self, database: Database, options: WatchOptions, sinks: list[Callable[[JobVerdict], None]],
                 stop: threading.Event | None = None, reconnect_window: float | None = None):
        self.options = options
        self.sinks = sinks
        self.stop = stop or threading.Event()
        self.judge = WatchJudge(options.definition, options.max_retries, options.settle, options.remember)
        self.database = database
        self.reconnect_window = 30.0 if options.once and reconnect_window is None else reconnect_window
        self.source: HistorySource | ListenSource = self._listen() if options.source == "listen" else \
            HistorySource(database, read_only=options.read_only, reconnect_window=self.reconnect_window)
        self.outside = Bounded(options.remember)
        self.outside_count = 0
        self.writes = 0
        self.gave_up = 0
        self.started = threading.Event()
        """Set once the window is fixed (LISTEN is on): writes from then on are judged."""
        self.readers: list[Callable[[list[Write]], None]] = []
        """Handed each batch of writes of the jobs followed, before they are judged (the step latencies)."""
        self.turns: list[Callable[[Watch], None]] = []
        """Called after each read and tick, on the watch's thread (the metrics, the progress line)."""
        self.opened: list[Callable[[Watch], None]] = []
        """Called once the source is open and chosen (the banner says which)."""

    def run(self) -> Totals:
        try:
            self.source.open(self.options.since, self.options.once)
        except NoHistory:
            if self.options.source != "auto":
                raise
            self.source = self._listen()
            self.source.open(self.options.since, self.options.once)
        for opened in self.opened:
            opened(self)
        self.started.set()
        ends = time.monotonic() + self.options.duration if self.options.duration is not None else None
        gaps_since: float | None = None
        try:
            while not self.stop.is_set():
                if ends is not None and time.monotonic() >= ends:
                    break
                writes = self.source.poll(self._timeout(ends), self.stop)
                self._take(writes)
                self._emit(self.judge.tick(self._now()))
                for turn in self.turns:
                    turn(self)
                if self.options.once:
                    if self.source.done:
                        break
                    if self.source.window and self.source.after >= (self.source.window.end_id or 0):
                        gaps_since = gaps_since or time.monotonic()
                        if time.monotonic() - gaps_since >= ONCE_GAPS:
                            self.gave_up = self.source.give_up_gaps()
                            break
        finally:
            self.source.close()
        return self.totals()

    def totals(self) -> Totals:
        judge = self.judge
        return Totals(outcomes=judge.outcomes.copy(), kinds=judge.kinds.copy(),
                      seeded=judge.seeded, in_flight=judge.in_flight(), at_steps=judge.at_steps(),
                      outside=self.outside_count, writes=self.writes, queries=self.source.queries,
                      reconnects=self.source.reconnects, gave_up=self.gave_up,
                      notes=[f"source: {self.source.description}", *self.source.notes])

    def _listen(self) -> ListenSource:
        """Without the history table: the notifications, and reads of the rows of the jobs in flight."""
        return ListenSource(self.database, read_only=self.options.read_only, reconnect_window=self.reconnect_window,
                            in_flight=lambda: self.judge.facts,
                            known=lambda job_id: self.judge.knows(job_id) or job_id in self.outside)

    # --- one read -----------------------------------------------------------------------

    def _now(self) -> float:
        return self.source.now().timestamp()

    def _timeout(self, ends: float | None) -> float:
        wait = IDLE
        deadline = self.judge.next_deadline()
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - self._now()))
        if ends is not None:
            wait = min(wait, max(0.0, ends - time.monotonic()))
        return wait

    def _take(self, writes: list[Write]) -> None:
        if not writes:
            return
        self.writes += len(writes)
        new = {w.job_id for w in writes if not self.judge.knows(w.job_id) and w.job_id not in self.outside}
        for facts in self.source.facts(new).values():
            if self._in_scope(facts):
                self.judge.follow(facts)
            else:
                self.outside.add(facts.job_id)
                self.outside_count += 1
        for facts in self.source.facts(self.judge.unknown_variants(writes)).values():
            self.judge.learn(facts)
        if self.readers:
            followed = [w for w in writes if w.job_id in self.judge.facts]
            for reader in self.readers:
                reader(followed)
        self._emit(self.judge.apply(writes, self._now()))

    def _in_scope(self, facts: JobFacts) -> bool:
        window = self.source.window
        if window is None or not window.holds(facts):
            return False
        if not self.options.tenants:
            return True
        return facts.tenant_id is not None and any(fnmatch.fnmatchcase(facts.tenant_id, pattern)
                                                   for pattern in self.options.tenants)

    def _emit(self, verdicts: list[JobVerdict]) -> None:
        for verdict in verdicts:
            for sink in self.sinks:
                sink(verdict)

"""The connections a suite may hold on a shared server: a share of what is free, never the last slots.

A staging server's `max_connections` is shared with the application and its listener. ye-run reads
how many slots the server has and how many others use, and keeps its own connections to what
leaves at least `KEEP_FREE` of the server free; scenarios wait for connections rather than fail
("too many clients") or make the application fail.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import psycopg2.extensions

from runner.errors import InfrastructureError

KEEP_FREE = 0.2
"""The share of the server's usable connections ye-run always leaves to others."""
PROBE_EVERY = 0.5
"""Seconds between two looks at the server while scenarios wait at the gate."""
WAIT_NOTE = 10.0
"""Seconds between two notes that a scenario is still waiting for connections."""


@dataclass(frozen=True, slots=True)
class ServerSlots:
    """What a server allows and what it is using, read once at the start of a session."""

    max_connections: int
    reserved: int
    """Slots only superusers (or pg_use_reserved_connections) may take."""
    in_use: int
    """Client connections open now, ours included."""

    @property
    def usable(self) -> int:
        return max(0, self.max_connections - self.reserved)


def read(conn: psycopg2.extensions.connection) -> ServerSlots:
    """The server's slots; `conn` itself counts as in use (the session holds it while it plans)."""
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('max_connections')::int, "
                    "current_setting('superuser_reserved_connections')::int "
                    "+ coalesce(current_setting('reserved_connections', true)::int, 0), "
                    "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int")
        found = cur.fetchone()
    conn.rollback()
    return ServerSlots(*found)


@dataclass(frozen=True, slots=True)
class Budget:
    """How many connections ye-run may hold at once, and why."""

    limit: int
    slots: ServerSlots
    cap: int | None = None
    """`--max-connections`, when given."""
    ceiling: int = 0
    """What ye-run may hold on this server with nobody else on it: the most a scenario can ever get."""
    others: int = 0
    """Connections of others when the budget was read (they may come and go: the gate looks again)."""
    ours: int = 1
    """Connections of this session outside what the gate hands out (its own), counted in `slots.in_use`."""

    @staticmethod
    def of(slots: ServerSlots, ours: int = 1, cap: int | None = None) -> Budget:
        """`ours`: connections of this session already counted in `slots.in_use` (they are inside the budget)."""
        others = max(0, slots.in_use - ours)
        allowed = slots.usable - math.ceil(KEEP_FREE * slots.usable)
        ceiling = max(0, allowed if cap is None else min(cap, allowed))
        return Budget(max(0, min(ceiling, allowed - others)), slots, cap, ceiling, others, ours)

    @property
    def allowed(self) -> int:
        return self.slots.usable - math.ceil(KEEP_FREE * self.slots.usable)

    def room(self, in_use: int, held: int, others: int | None = None) -> int:
        """How many more connections fit now: `in_use` is every client connection on the server (read now, ours
        among them), `held` what this session has handed out (some of it perhaps not connected yet), `others`
        the latest exact count of others' connections (default: the one read at the start)."""
        return self.allowed - max(in_use, (self.others if others is None else others) + held)

    def others_now(self, in_use: int, held: int) -> int | None:
        """Others' connections, exactly, when nothing is handed out (every connection of ours but the session's
        is closed); None otherwise (some of ours may still be connecting: the last exact count stands)."""
        return max(0, in_use - self.ours) if held == 0 else None

    def describe(self) -> str:
        s = self.slots
        others = f"{s.max_connections} max_connections, {s.reserved} reserved, {s.in_use} in use"
        capped = f", --max-connections {self.cap}" if self.cap is not None else ""
        return f"connection budget {self.limit} ({others}; {KEEP_FREE:.0%} of the server kept free{capped})"

    def refuse(self, needed: int, what: str) -> InfrastructureError:
        return InfrastructureError(f"{what} needs {needed} connections at once; the {self.describe()} allows "
                                   f"fewer: free connections on the server, or raise --max-connections")


class Gate:
    """Connections handed out under the budget in the order asked for (a big scenario is not overtaken for
    ever by small ones); waiting, never failing. With a `probe` (every client connection on the server, now),
    it also waits while others (another ye-run, the application) have taken the room it counted on."""

    def __init__(self, limit: int, budget: Budget | None = None, probe: Callable[[], int | None] | None = None):
        self.limit = limit
        self.held = 0
        self.peak = 0
        self._budget = budget
        self._probe = probe
        self._seen: tuple[float, int | None] = (-PROBE_EVERY, None)
        self._others = budget.others if budget is not None else 0
        """Others' connections, as last counted exactly: they leave too, and a scenario that did not fit beside
        them at the start must fit once they have gone."""
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()

    def _room(self, n: int) -> bool:
        """Whether `n` more fit on the server as it is now (read at most every PROBE_EVERY; unknown: yes)."""
        if self._probe is None or self._budget is None:
            return True
        at, in_use = self._seen
        if time.monotonic() - at >= PROBE_EVERY:
            in_use = self._probe()
            self._seen = (time.monotonic(), in_use)
            exact = self._budget.others_now(in_use, self.held) if in_use is not None else None
            self._others = self._others if exact is None else exact
        return in_use is None or self._budget.room(in_use, self.held, self._others) >= n

    def busy(self) -> str:
        """Why a scenario waits, for the console: what the server had in use when last read, and the budget."""
        in_use = self._seen[1]
        seen = f"{in_use} connection(s) in use on the server" if in_use is not None else "the server not readable"
        allowed = self._budget.allowed if self._budget is not None else self.limit
        return f"{seen}, {self.held} held by this run, {allowed} allowed"

    def acquire(self, n: int, *stops: threading.Event, waiting: Callable[[float], None] | None = None) -> bool:
        """Wait until it is this caller's turn and `n` connections fit; False when one of `stops` was set first
        (an interrupt, --fail-fast). `waiting(seconds)` is called every WAIT_NOTE seconds while it waits."""
        ticket = object()
        since = next_note = time.monotonic()
        next_note += WAIT_NOTE
        with self._cond:
            self._queue.append(ticket)
            try:
                while self._queue[0] is not ticket or self.held + n > self.limit or not self._room(n):
                    if any(stop.is_set() for stop in stops):
                        return False
                    if waiting is not None and time.monotonic() >= next_note:
                        next_note += WAIT_NOTE
                        waiting(time.monotonic() - since)
                    self._cond.wait(0.1)
                self.held += n
                self.peak = max(self.peak, self.held)
                return True
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()

    def release(self, n: int) -> None:
        with self._cond:
            self.held -= n
            self._cond.notify_all()

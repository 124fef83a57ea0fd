"""The connections a suite may hold on a shared server: a share of what is free, never the last slots.

A staging server's `max_connections` is shared with the application and its listener. ye-run reads
how many slots the server has and how many others use, and keeps its own connections to what
leaves at least `KEEP_FREE` of the server free; scenarios wait for connections rather than fail
("too many clients") or make the application fail.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

import psycopg2.extensions

from runner.errors import InfrastructureError

KEEP_FREE = 0.2
"""The share of the server's usable connections ye-run always leaves to others."""


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

    @staticmethod
    def of(slots: ServerSlots, ours: int = 1, cap: int | None = None) -> Budget:
        """`ours`: connections of this session already counted in `slots.in_use` (they are inside the budget)."""
        others = max(0, slots.in_use - ours)
        share = slots.usable - others - math.ceil(KEEP_FREE * slots.usable)
        limit = max(0, share if cap is None else min(cap, share))
        return Budget(limit, slots, cap)

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
    ever by small ones); waiting, never failing."""

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0
        self.peak = 0
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()

    def acquire(self, n: int, stop: threading.Event) -> bool:
        """Wait until it is this caller's turn and `n` connections fit; False when `stop` was set first."""
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                while self._queue[0] is not ticket or self.held + n > self.limit:
                    if stop.is_set():
                        return False
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

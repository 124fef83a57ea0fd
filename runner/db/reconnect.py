"""Surviving a lost connection, the one way every long-lived loop does it.

The run's own connection, its cleanup, the shared LISTEN connection and the reference
pipeline's dispatcher and slots all meet the same server restarts and half-open links. What a
lost connection is, how long to wait before the next attempt, when to give up (the reconnect
window, or a stop signal), and what a notification on the pipeline's channels says are decided
here, once.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, TypeVar

import psycopg2
import psycopg2.errors

log = logging.getLogger("ye_run.observe")
T = TypeVar("T")
CONNECT_TIMEOUT = 3
"""Seconds one connection attempt may take while a lost server is waited for (libpq's minimum is 2)."""


def lost(exc: BaseException) -> bool:
    """Whether a driver error means the connection (or the server) is gone, not that a statement failed."""
    return isinstance(exc, psycopg2.errors.AdminShutdown) or (
        isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) and getattr(exc, "pgcode", None) is None)


BROKEN = (psycopg2.OperationalError, psycopg2.InterfaceError)
"""What makes a long-lived reader (a LISTEN connection, a pipeline slot) start over on a new connection: a lost
one, and also a statement its timeout cut short (the server is in trouble; the reader must not fall behind)."""


class Backoff:
    """Waits that double from `first` up to `most`: quick while a blip passes, gentle on a server that is down."""

    def __init__(self, first: float = 0.05, most: float = 2.0):
        self.first = first
        self.most = most
        self.current = first

    def next(self) -> float:
        """The wait before the next attempt (and the one after doubles)."""
        wait, self.current = self.current, min(self.current * 2, self.most)
        return wait

    def reset(self) -> None:
        self.current = self.first


@dataclass
class Window:
    """How long a loop waits for a lost server before it gives up, and the signals that end the wait early."""

    seconds: float
    stops: tuple[threading.Event, ...] = ()
    started: float = field(default_factory=time.monotonic)
    backoff: Backoff = field(default_factory=lambda: Backoff(0.1, 2.0))

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def over(self) -> bool:
        return self.elapsed >= self.seconds

    @property
    def stopped(self) -> bool:
        return any(stop.is_set() for stop in self.stops)

    def connect_timeout(self) -> int:
        """An attempt's connect timeout: short (a hung server must not hold a loop past its window, nor past a
        signal), and never past the window."""
        left = self.seconds - self.elapsed
        return max(2, CONNECT_TIMEOUT if not math.isfinite(left) else min(CONNECT_TIMEOUT, math.ceil(left)))

    def pause(self) -> None:
        """The next backoff, cut short by the window's end or a stop signal."""
        wait = min(self.backoff.next(), max(0.05, self.seconds - self.elapsed))
        if self.stops:
            self.stops[0].wait(wait)
        else:
            time.sleep(wait)


def retry(attempt: Callable[[int | None], T], window: Window, retryable: Callable[[Exception], bool],
          waiting: Callable[[Window, Exception], None] = lambda window, exc: None) -> T:
    """`attempt(connect_timeout)` until it succeeds; a failure `retryable` says is worth waiting for is tried again
    within the window (`waiting` hears of each), anything else, or the window's end, or a stop, is raised."""
    timeout: int | None = None
    while True:
        try:
            return attempt(timeout)
        except Exception as exc:
            if not retryable(exc) or window.over or window.stopped:
                raise
            waiting(window, exc)
            window.pause()
            timeout = window.connect_timeout()


class Notified(NamedTuple):
    """One notification: which row, of which job, what kind ('v' variant, 'j' job), its state and database time."""

    row_id: str
    job_id: str
    kind: str
    step: str
    status: str
    db_time: datetime | None
    tenant_id: str | None = None


class Recorded(NamedTuple):
    """A history record as its trigger announced it (runner.sql, ye_run_announce)."""

    id: int
    kind: str
    row_id: str
    job_id: str
    step: str | None
    status: str | None
    retry_count: int | None
    db_time: datetime

    @property
    def cut(self) -> bool:
        """Step or status longer than the announcement carries: the record must be read from the table."""
        return len(self.step or "") >= 200 or len(self.status or "") >= 200


def parse_recorded(payload: str) -> Recorded | None:
    """An announcement on `ye_run_history`; None when it is not one (logged)."""
    try:
        record_id, kind, row_id, job_id, step, status, retry_count, stamp = json.loads(payload)
        return Recorded(int(record_id), str(kind), str(row_id), str(job_id), None if step is None else str(step),
                        None if status is None else str(status), None if retry_count is None else int(retry_count),
                        datetime.fromisoformat(stamp))
    except (ValueError, TypeError):
        log.warning("ignoring a malformed history announcement: %.200s", payload)
        return None


def parse(payload: str, job_channel: bool) -> Notified | None:
    """The payload of `job_variant_state_changed` (or, with `job_channel`, `job_state_changed`); None when it
    is not one (logged: the trigger is someone else's, and a malformed payload must not stop a loop)."""
    try:
        data = json.loads(payload)
        job_id = str(data["job_id"])
        row_id = job_id if job_channel else str(data["job_variants_id"])
        step, status = str(data["current_step"]), str(data["status"])
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring a malformed notification: %.200s", payload)
        return None
    stamp, tenant = data.get("updated_at"), data.get("tenant_id")
    try:
        db_time = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        db_time = None
    return Notified(row_id, job_id, "j" if job_channel else "v", step, status, db_time,
                    str(tenant) if tenant is not None else None)

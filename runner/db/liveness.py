"""Whether a registered run is still going, so no cleaner ever deletes the rows of a live run.

A run holds a session-level advisory lock, keyed on its run id, on its own connection from its
registration to its verdict (re-taken after a reconnect), and records its owner: host, pid and a
token that tells this process apart from a later one with the same pid. A cleaner reads the lock
in `pg_locks` (it never takes a run's lock to test it), and for a run without its lock (between a
lost connection and the reconnect) looks at the owner process, when it is on the cleaner's host,
or at the run's heartbeat. Only a run that has finished, or is proven gone, may be cleaned.
"""

from __future__ import annotations

import enum
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import psycopg2.extensions

from runner.durations import format_seconds

LOCK_CLASS = 31077
"""The first key of every run lock (`ye`); the second is hashtext(run_id)."""
TENANT_CLASS = 31078
"""The first key of the tenant locks: a run holds its tenant's shared, deleting a tenant row needs it exclusive."""
HEARTBEAT = 60.0
"""Seconds between a live run's `seen_at` updates."""
DEFAULT_STALE = 30.0 + 2 * HEARTBEAT
"""Silence after which a run without its lock counts as gone: the default reconnect window and two heartbeats."""


@dataclass(frozen=True, slots=True)
class Owner:
    """The process that runs a scenario: where, which pid, and a token unique to this process's life."""

    host: str
    pid: int
    token: str | None

    @staticmethod
    def this_process() -> Owner:
        return Owner(socket.gethostname(), os.getpid(), process_token(os.getpid()))


def process_token(pid: int) -> str | None:
    """`boot id:pid namespace:start time` of a Linux process, or None where /proc cannot say (then only the
    lock and the heartbeat tell whether the run is alive)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink(f"/proc/{pid}/ns/pid")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
    return f"{boot}:{namespace}:{fields[19]}" if len(fields) > 19 else None


def claim_sql() -> str:
    """The run's lock and a shared hold on its tenant, taken on the run's connection; parameters: run id, tenant.
    Blocking: a cleaner holds either key only for its own short transaction."""
    return (f"SELECT pg_advisory_lock({LOCK_CLASS}, hashtext(%s)), "
            f"pg_advisory_lock_shared({TENANT_CLASS}, hashtext(%s))")


def held_here(cur: psycopg2.extensions.cursor, run_id: str) -> bool:
    """Whether this session holds the run's lock: it is the run (cleaning up after itself)."""
    cur.execute("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                f"AND pid = pg_backend_pid() AND classid = {LOCK_CLASS} AND objsubid = 2 "
                "AND objid = hashtext(%s)::oid)", (run_id,))
    return bool(cur.fetchone()[0])


def try_run(cur: psycopg2.extensions.cursor, run_id: str) -> bool:
    """A cleaner's hold on a run for the length of its transaction; False while the run itself holds it."""
    cur.execute(f"SELECT pg_try_advisory_xact_lock({LOCK_CLASS}, hashtext(%s))", (run_id,))
    return bool(cur.fetchone()[0])


def try_tenant(cur: psycopg2.extensions.cursor, tenant_id: str) -> bool:
    """The right to delete a tenant row, for the length of the transaction; False while another live run uses
    the tenant (a run's own shared hold does not count against it)."""
    cur.execute(f"SELECT pg_try_advisory_xact_lock({TENANT_CLASS}, hashtext(%s))", (tenant_id,))
    return bool(cur.fetchone()[0])


class State(enum.Enum):
    RUNNING = "running"
    """Its lock is held: its process is connected and working."""
    ALIVE = "alive"
    """No lock (reconnecting), but its process is alive on this host."""
    RECENT = "recently seen"
    """No lock, on another host (or a process /proc cannot tell): seen within its stale window."""
    UNKNOWN = "no owner recorded"
    """Registered by an older ye-run that recorded no owner and took no lock."""
    ABANDONED = "abandoned"
    """No verdict, and its process is proven gone or silent past its stale window."""
    FINISHED = "finished"

    @property
    def cleanable(self) -> bool:
        return self in (State.FINISHED, State.ABANDONED)


@dataclass(frozen=True, slots=True)
class Status:
    state: State
    why: str

    def __str__(self) -> str:
        return f"{self.state.value}: {self.why}" if self.why else self.state.value


STATUS_SQL = f"""
SELECT r.run_id, r.finished_at IS NOT NULL, r.owner_host, r.owner_pid, r.owner_token,
       extract(epoch FROM now() - coalesce(r.seen_at, r.started_at))::float8,
       extract(epoch FROM r.stale_after)::float8,
       EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND l.classid = {LOCK_CLASS} AND l.objsubid = 2 AND l.objid = hashtext(r.run_id)::oid
               AND l.pid <> pg_backend_pid())
FROM ye_run_runs r WHERE r.run_id = ANY(%s)
"""


def statuses(cur: psycopg2.extensions.cursor, run_ids: list[str]) -> dict[str, Status]:
    """Each run's state as a cleaner must see it (reads only; takes no lock)."""
    cur.execute(STATUS_SQL, (run_ids,))
    return {row[0]: classify(*row[1:]) for row in cur.fetchall()}


def classify(finished: bool, host: str | None, pid: int | None, token: str | None, silent: float,
             stale_after: float | None, locked: bool, here: Owner | None = None) -> Status:
    """The state of one run from what the registry and pg_locks say of it."""
    if locked:
        where = f"pid {pid} on {host}" if host else "an older ye-run"
        return Status(State.RUNNING, f"its process ({where}) holds the run's lock")
    if finished:
        return Status(State.FINISHED, "")
    if host is None:
        return Status(State.UNKNOWN, "started by an older ye-run that records no owner; --force once you know "
                                     "it has ended")
    here = here or Owner.this_process()
    if host == here.host and pid is not None and token is not None and _same_machine(token, here.token):
        if process_token(pid) == token:
            return Status(State.ALIVE, f"its process (pid {pid}) is alive on this host, reconnecting")
        return Status(State.ABANDONED, f"its process (pid {pid} on {host}) has ended without a verdict")
    window = stale_after if stale_after is not None else 0.0
    if silent < window:
        return Status(State.RECENT, f"pid {pid} on {host} was seen {format_seconds(silent)} ago (it counts as "
                                    f"gone after {format_seconds(window)} of silence)")
    return Status(State.ABANDONED, f"no verdict, and pid {pid} on {host} has been silent for "
                                   f"{format_seconds(silent)}")


def _same_machine(token: str, ours: str | None) -> bool:
    """Same boot and pid namespace: a pid there names the same process table as ours."""
    return ours is not None and token.rsplit(":", 1)[0] == ours.rsplit(":", 1)[0]

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

RUN_KEY = "hashtextextended('ye-run run ' || {}, 0)"
"""A run's lock key: 64 bits of its id (32 would collide once in a few hundred thousand pairs of runs)."""
TENANT_KEY = "hashtextextended('ye-run tenant ' || {}, 0)"
"""A tenant's lock key: a run holds it shared; deleting a tenant row needs it exclusive."""
LOCK_WAIT = "SET LOCAL lock_timeout = '10s'"
"""Taking a run's lock waits at most this long (a cleaner holds it only for its own short transaction)."""
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
        return _token(pid)
    except OSError:
        return None


def process_alive(pid: int, token: str) -> bool | None:
    """Whether the process `token` names is still `pid`: False only when /proc proves it gone (no such pid, or
    another process's life); None when /proc cannot say (another user's process, hidepid)."""
    try:
        return _token(pid) == token
    except FileNotFoundError:
        return False
    except OSError:
        return None


def _token(pid: int) -> str:
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    namespace = os.readlink(f"/proc/{pid}/ns/pid")
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
    if len(fields) <= 19:
        raise OSError(f"/proc/{pid}/stat has no start time")
    return f"{boot}:{namespace}:{fields[19]}"


def claim_sql() -> str:
    """The run's lock and a shared hold on its tenant, taken on the run's connection; parameters: run id, tenant.
    A cleaner holds either key only for its own short transaction: waited for, at most LOCK_WAIT."""
    return (f"{LOCK_WAIT}; SELECT pg_advisory_lock({RUN_KEY.format('%s')}), "
            f"pg_advisory_lock_shared({TENANT_KEY.format('%s')})")


def _lock_matches(key: str) -> str:
    """A pg_locks condition for a 64-bit advisory key (its high half in classid, its low half in objid)."""
    return (f"l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted "
            f"AND l.classid = (({key} >> 32) & 4294967295)::oid AND l.objid = ({key} & 4294967295)::oid")


def held_here(cur: psycopg2.extensions.cursor, run_id: str) -> bool:
    """Whether this session holds the run's lock: it is the run (cleaning up after itself)."""
    cur.execute(f"SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE {_lock_matches(RUN_KEY.format('%(run)s'))} "
                "AND l.pid = pg_backend_pid())", {"run": run_id})
    return bool(cur.fetchone()[0])


def try_run(cur: psycopg2.extensions.cursor, run_id: str) -> bool:
    """A cleaner's hold on a run for the length of its transaction; False while the run itself holds it."""
    cur.execute(f"SELECT pg_try_advisory_xact_lock({RUN_KEY.format('%s')})", (run_id,))
    return bool(cur.fetchone()[0])


def try_tenant(cur: psycopg2.extensions.cursor, tenant_id: str) -> bool:
    """The right to delete a tenant row, for the length of the transaction; False while another live run uses
    the tenant (a run's own shared hold does not count against it)."""
    cur.execute(f"SELECT pg_try_advisory_xact_lock({TENANT_KEY.format('%s')})", (tenant_id,))
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
    PENDING = "pending"
    """Finished, but its rows were kept while the pipeline might still work on them, and that time is not over."""
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
       EXISTS (SELECT 1 FROM pg_locks l WHERE {_lock_matches(RUN_KEY.format('r.run_id'))}
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND l.pid <> pg_backend_pid()),
       extract(epoch FROM r.cleanup_pending_until - now())::float8
FROM ye_run_runs r WHERE r.run_id = ANY(%s)
"""


def statuses(cur: psycopg2.extensions.cursor, run_ids: list[str]) -> dict[str, Status]:
    """Each run's state as a cleaner must see it (reads only; takes no lock)."""
    cur.execute(STATUS_SQL, (run_ids,))
    return {row[0]: classify(*row[1:]) for row in cur.fetchall()}


def classify(finished: bool, host: str | None, pid: int | None, token: str | None, silent: float,
             stale_after: float | None, locked: bool, pending: float | None = None,
             here: Owner | None = None) -> Status:
    """The state of one run from what the registry and pg_locks say of it."""
    if locked:
        where = f"pid {pid} on {host}" if host else "an older ye-run"
        return Status(State.RUNNING, f"its process ({where}) holds the run's lock")
    if finished:
        if pending is not None and pending > 0:
            return Status(State.PENDING, f"the pipeline may still be working on its rows for "
                                         f"{format_seconds(pending)} (its steps' limits)")
        return Status(State.FINISHED, "")
    if host is None:
        return Status(State.UNKNOWN, "started by an older ye-run that records no owner; --force once you know "
                                     "it has ended")
    here = here or Owner.this_process()
    if host == here.host and pid is not None and token is not None and _same_machine(token, here.token):
        alive = process_alive(pid, token)
        if alive:
            return Status(State.ALIVE, f"its process (pid {pid}) is alive on this host, reconnecting")
        if alive is False:
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

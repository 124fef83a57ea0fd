"""A database error met mid-run, as one line naming its cause (exit 3), never a traceback."""

from __future__ import annotations

import psycopg2
import psycopg2.errors

from runner.db.reconnect import lost
from runner.errors import InfrastructureError

__all__ = ["ConnectionLost", "describe", "lost"]

_CAUSES: tuple[tuple[type[psycopg2.Error], str], ...] = (
    (psycopg2.errors.InsufficientPrivilege, "the database refuses this role ({message}); grant it what ye-run "
                                            "needs (`ye-run db check` lists the tables)"),
    (psycopg2.errors.ReadOnlySqlTransaction, "the database accepts only reads on this connection ({message}); "
                                             "check default_transaction_read_only, the URL's options, or a "
                                             "read-only replica"),
    (psycopg2.errors.AdminShutdown, "the database server shut down ({message})"),
    (psycopg2.errors.QueryCanceled, "a statement was cancelled ({message})"),
    (psycopg2.errors.LockNotAvailable, "a lock could not be had in time ({message})"),
)


class ConnectionLost(InfrastructureError):
    """The server closed the connection or could not be reached: worth waiting for, within a bound."""


def describe(exc: psycopg2.Error, doing: str = "") -> InfrastructureError:
    """The InfrastructureError a driver error stands for; `doing` says what the runner was doing."""
    message = _message(exc)
    during = f" while {doing}" if doing else ""
    if lost(exc):
        return ConnectionLost(f"lost the database connection{during}: {message}")
    for kind, text in _CAUSES:
        if isinstance(exc, kind):
            return InfrastructureError(text.format(message=message) + during)
    return InfrastructureError(f"database error{during}: {message}")


def _message(exc: psycopg2.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = diag.message_primary if diag is not None else None
    text = (primary or str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__

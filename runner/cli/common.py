"""What every command shares: the exit-code help and the one place errors become exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from runner.errors import ScenarioError, YeRunError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES_HELP = """\b
Exit codes:
  0    every scenario passed (or: valid)
  1    an assertion failed (or: a scenario is invalid, for validate)
  2    bad input or usage
  3    infrastructure: database unreachable, refused, or schema missing
  130  interrupted (Ctrl+C, SIGTERM)
"""


def handle_errors(command: F) -> F:
    """Print a YeRunError as one short message and exit with its code; bugs keep tracebacks."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ScenarioError as exc:
            for problem in exc.problems:
                click.echo(str(problem), err=True)
            sys.exit(exc.exit_code)
        except YeRunError as exc:
            click.echo(f"ye-run: error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]

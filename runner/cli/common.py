"""What every command shares: the exit-code help and the one place errors become exit codes.

Loading and selection are the scenario layer's (`runner.scenario.suite`), shared with the pytest plugin."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from runner import bugs
from runner.errors import Refused, ScenarioError, YeRunError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES_HELP = """\b
Exit codes:
  0    every scenario passed (or: valid)
  1    an assertion failed (or: a scenario is invalid, for validate)
  2    bad input or usage
  3    infrastructure: database unreachable, refused, or schema missing
  70   a bug in ye-run (one line; the traceback is saved to a file)
  130  interrupted (Ctrl+C, SIGTERM)
"""


def handle_errors(command: F) -> F:
    """Print a YeRunError as one short message and exit with its code; a bug gets exit 70 and a traceback file."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ScenarioError as exc:
            for problem in exc.problems:
                click.echo(str(problem), err=True)
            sys.exit(exc.exit_code)
        except Refused as exc:
            for line in exc.lines:
                click.echo(line if _located(line) else f"ye-run: error: {line}", err=True)
            sys.exit(exc.exit_code)
        except YeRunError as exc:
            click.echo(f"ye-run: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except BrokenPipeError:  # the reader went away (`| head`): nothing left to say, and nobody to say it to
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except Exception as exc:  # a bug: one line and a traceback file, with an exit code of its own
            bug = bugs.record(exc)
            click.echo(f"ye-run: {bug}", err=True)
            sys.exit(bug.exit_code)

    return wrapper  # type: ignore[return-value]


def _located(line: str) -> bool:
    """A `file:line:col: $.path: message` line speaks for itself; anything else gets the error prefix."""
    return re.match(r"^[^:\s][^:]*:\d+:\d+: \$", line) is not None

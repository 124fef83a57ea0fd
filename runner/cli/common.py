"""What every command shares: the exit-code help and the one place errors become exit codes."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from runner import bugs
from runner.definition import DEFAULT, Definition
from runner.errors import InputError, Refused, ScenarioError, YeRunError

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


def definition(path: Path | None) -> Definition:
    """The pipeline definition in force: the file given, else the built-in default."""
    if path is None:
        return DEFAULT
    from runner.scenario import loader

    return loader.load_definition(path)


def parse_variables(given: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`--var NAME=VALUE` options as a mapping; InputError for a malformed one."""
    out = {}
    for item in given:
        name, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise InputError(f"--var {item!r}: write NAME=VALUE (NAME: letters, digits and _)")
        out[name] = value
    return out


def load_all(paths: list[str], pipeline_file: Path | None, variables: tuple[str, ...] = ()) -> list:  # type: ignore[type-arg]
    """Every scenario (every matrix instance) in `paths`, validated against the definition in force, variables
    resolved; ScenarioError lists every problem of every file at once (nothing is touched then)."""
    from runner.scenario import discover, loader

    definition_in_force = definition(pipeline_file)
    values = parse_variables(variables)
    loaded, problems = [], []
    for file in discover.scenario_files(paths):
        try:
            loaded.extend(loader.load_instances(file, definition_in_force, values))
        except ScenarioError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ScenarioError(problems)
    return loaded


def choose(loaded: list, tags: tuple[str, ...], skip_tags: tuple[str, ...], keyword: str | None,  # type: ignore[type-arg]
           shard: str | None) -> list:  # type: ignore[type-arg]
    """The selected scenarios (after validation of every file, so an unselected invalid file still counts)."""
    from runner.scenario import select

    chosen = select.select(loaded, select.Selection(tuple(tags), tuple(skip_tags), keyword,
                                                    select.parse_shard(shard) if shard else None))
    if not chosen and not shard:
        raise InputError(f"no scenario selected out of {len(loaded)} (check --tag, --skip-tag and -k)")
    return chosen

"""`ye-run`: the command group, the `ye-run SCENARIO...` shortcut and error handling."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from runner import __version__
from runner.errors import ExitCode, ScenarioError, YeRunError

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


class ShortcutGroup(click.Group):
    """A group where `ye-run FILE...` means `ye-run run FILE...`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and "run" in self.commands and _looks_like_path(args[0]) and args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


def _looks_like_path(argument: str) -> bool:
    """A scenario argument, not a mistyped command: an existing path, or one with / . * in it."""
    from pathlib import Path

    return not argument.startswith("-") and (Path(argument).exists() or any(c in argument for c in "/.*?"))


@click.group(cls=ShortcutGroup, epilog=EXIT_CODES_HELP,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="ye-run")
def cli() -> None:
    """Run declarative YAML scenarios against the ad-image pipeline.

    `ye-run SCENARIO...` is short for `ye-run run SCENARIO...`. With no --database-url
    (or YE_DATABASE_URL), ye-run starts an embedded PostgreSQL and the built-in reference
    pipeline, so a scenario runs on a fresh machine with nothing else installed.
    """


def _register() -> None:
    from runner.cli import database, pipeline, validate

    validate.register(cli)
    database.register(cli)
    pipeline.register(cli)


_register()


def main() -> None:
    cli(prog_name="ye-run")


if __name__ == "__main__":  # pragma: no cover
    main()


__all__ = ["cli", "main", "handle_errors", "ExitCode"]

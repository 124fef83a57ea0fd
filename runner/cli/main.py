"""`ye-run`: the command group, the `ye-run SCENARIO...` shortcut and error handling."""

from __future__ import annotations

import importlib
import signal
import sys

import click

from runner import __version__
from runner.cli.common import EXIT_CODES_HELP
from runner.errors import ExitCode


COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("runner.cli.run", "run", "Run scenarios: seed, observe, assert, report, clean up."),
    "list": ("runner.cli.listing", "list_scenarios", "List the scenarios a selection picks; no database."),
    "validate": ("runner.cli.validate", "validate", "Check scenario files without touching a database."),
    "schema": ("runner.cli.validate", "schema", "Print the scenario JSON Schema (or another), for editors."),
    "db": ("runner.cli.database", "db", "Install or check what ye-run needs in a database."),
    "cleanup": ("runner.cli.database", "cleanup", "Delete seeded rows and every row that references them."),
    "runs": ("runner.cli.database", "runs", "List the runs in the run registry, and what they kept."),
    "pipeline": ("runner.cli.pipeline", "pipeline", "Run the reference pipeline (a stand-in for the YE/YH parts)."),
    "compare": ("runner.cli.compare", "compare", "Compare two JSON reports: verdicts, and step latency regressions."),
    "report": ("runner.cli.report", "report", "Render a saved JSON report as HTML; merge shards' reports into one."),
    "watch": ("runner.cli.watch", "watch", "Judge every job a live database runs against the pipeline definition."),
}
"""Commands are imported only when used, so `ye-run --help` does not load psycopg2, jsonschema or Pillow."""


class ShortcutGroup(click.Group):
    """A group of lazily imported commands, where `ye-run FILE...` means `ye-run run FILE...`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in COMMANDS and args[0] not in ("-h", "--help", "--version") \
                and any(_looks_like_path(a) for a in args):
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, _, help_) in COMMANDS.items()])


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

    \b
    Examples:
      ye-run scenarios/smoke.yaml
      ye-run scenarios/ -j 4 --junit junit.xml --json report.json
      ye-run list scenarios/ --tag regression
      ye-run validate scenarios/
      ye-run db check --database-url postgresql://qa@staging-db/pipeline
      ye-run db describe jobs_variants
      ye-run cleanup --run 20261126T101500-3fa9c1 --dry-run
    """


def main() -> None:
    """The console script: Ctrl+C, SIGTERM or SIGHUP at any moment is one line and exit 130, never a traceback."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    try:
        code = cli.main(prog_name="ye-run", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("ye-run: interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def _interrupt(signum: int, _frame: object) -> None:
    """Until a command installs its own handling (a run stops gracefully), a signal is an interrupt."""
    raise KeyboardInterrupt


if __name__ == "__main__":  # pragma: no cover
    main()


"""`ye-run`: the command group, the `ye-run SCENARIO...` shortcut and error handling."""

from __future__ import annotations


import click

from runner import __version__
from runner.cli.common import EXIT_CODES_HELP


class ShortcutGroup(click.Group):
    """A group where `ye-run FILE...` means `ye-run run FILE...`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and "run" in self.commands and args[0] not in self.commands \
                and args[0] not in ("-h", "--help", "--version") and any(_looks_like_path(a) for a in args):
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

    \b
    Examples:
      ye-run scenarios/smoke.yaml
      ye-run scenarios/ --junit junit.xml --json report.json
      ye-run validate scenarios/
      ye-run db check --database-url postgresql://qa@staging-db/pipeline
      ye-run cleanup --run 20261126T101500-3fa9c1 --dry-run
    """


def _register() -> None:
    from runner.cli import database, pipeline, run, validate

    run.register(cli)
    validate.register(cli)
    database.register(cli)
    pipeline.register(cli)


_register()


def main() -> None:
    cli(prog_name="ye-run")


if __name__ == "__main__":  # pragma: no cover
    main()


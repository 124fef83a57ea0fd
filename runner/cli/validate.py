"""`ye-run validate` and `ye-run schema`: check scenario files; print the JSON Schemas."""

from __future__ import annotations

import sys

import click

from runner.cli.common import handle_errors

from runner import resources
from runner.errors import ExitCode, ScenarioError
from runner.scenario import discover, loader


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("-q", "--quiet", is_flag=True, help="Print only problems, not the files that are valid.")
def validate(paths: tuple[str, ...], quiet: bool) -> None:
    """Check scenario files against the schema without touching a database.

    PATH may be a file, a directory (searched recursively for *.yaml and *.yml) or a
    glob. Every problem is printed, one per line, as file:line:col: json.path: message.
    Exit 0 when all files are valid, 1 when any is invalid, 2 for usage errors.
    """
    files = handle_errors(discover.scenario_files)(list(paths))
    invalid = 0
    for file in files:
        try:
            loader.load(file)
        except ScenarioError as exc:
            invalid += 1
            for problem in exc.problems:
                click.echo(str(problem))
            continue
        if not quiet:
            click.echo(f"{file}: ok")
    summary = f"{len(files) - invalid} valid, {invalid} invalid"
    click.echo(summary, err=True)
    sys.exit(ExitCode.FAILED if invalid else ExitCode.PASSED)


@click.command()
@click.option("--pipeline", is_flag=True, help="Print the reference pipeline configuration schema instead.")
@click.option("--report", is_flag=True, help="Print the JSON report schema instead.")
def schema(pipeline: bool, report: bool) -> None:
    """Print the scenario JSON Schema (draft 2020-12), for editors and CI."""
    name = "pipeline.schema.json" if pipeline else "report.schema.json" if report else "scenario.schema.json"
    click.echo(resources.schema_text(name), nl=False)


def register(group: click.Group) -> None:
    group.add_command(validate)
    group.add_command(schema)

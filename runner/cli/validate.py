"""`ye-run validate` and `ye-run schema`: check scenario files; print the JSON Schemas."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from runner.cli import config, options
from runner.cli.common import handle_errors

from runner import resources
from runner.errors import ExitCode, ScenarioError
from runner.definition import DEFAULT
from runner.scenario import discover, suite


@click.command()
@click.argument("paths", nargs=-1, metavar="PATH...")
@click.option("-q", "--quiet", is_flag=True, help="Print only problems, not the files that are valid.")
@options.pipeline_file
@options.variables
@config.project_config
def validate(paths: tuple[str, ...], quiet: bool, pipeline_file: Path | None, variables: tuple[str, ...],
             project: config.Applied) -> None:
    """Check scenario files against the schema without touching a database.

    PATH may be a file, a directory (searched recursively for *.yaml and *.yml) or a
    glob. Every problem is printed, one per line, as file:line:col: json.path: message.
    Step names are checked against the pipeline definition in force: the scenario's own
    (`pipeline_file:`), else its folder's in the project config, else --pipeline-file, else
    the built-in one. Scenario names must be unique across the files given (a second one is
    invalid). PATH... defaults to the project config's `paths` (docs/config.md).
    Exit 0 when all files are valid, 1 when any is invalid, 2 for usage errors (and an
    invalid definition file).
    """
    handle_errors(_validate)(list(paths), quiet, pipeline_file, variables, project)


def _validate(paths: list[str], quiet: bool, pipeline_file: Path | None, variables: tuple[str, ...],
              project: config.Applied) -> None:
    reader = suite.Loader(pipeline_file, variables,
                          suite.definitions_in_force(pipeline_file, project.pipeline_by, project.folders))
    files = discover.scenario_files(paths)
    invalid = 0
    for file in files:
        try:
            found = reader.unique(file)
        except ScenarioError as exc:
            invalid += 1
            for problem in exc.problems:
                click.echo(str(problem))
            continue
        if not quiet:
            click.echo((f"{file}: ok" if len(found) == 1 else f"{file}: ok ({len(found)} instances: "
                        + ", ".join(s.name for s in found) + ")") + _definitions(found))
    summary = f"{len(files) - invalid} valid, {invalid} invalid"
    click.echo(summary, err=True)
    sys.exit(ExitCode.FAILED if invalid else ExitCode.PASSED)


def _definitions(found: list) -> str:  # type: ignore[type-arg]
    """The pipeline definitions a file's scenarios are read with, when not the built-in one."""
    sources = sorted({s.definition.source for s in found if s.definition is not DEFAULT})
    return f" (pipeline definition: {', '.join(sources)})" if sources else ""


@click.command()
@click.option("--pipeline", is_flag=True, help="Print the reference pipeline configuration schema instead.")
@click.option("--report", is_flag=True, help="Print the JSON report schema instead.")
@click.option("--definition", is_flag=True, help="Print the pipeline definition file's schema instead.")
@options.pipeline_file
def schema(pipeline: bool, report: bool, definition: bool, pipeline_file: Path | None) -> None:
    """Print the scenario JSON Schema (draft 2020-12), for editors and CI.

    With --pipeline-file, the scenario (and reference pipeline) schema carries that
    definition's step names, so a team's own steps complete and validate in the editor.
    """
    name = ("pipeline.schema.json" if pipeline else "report.schema.json" if report else
            "definition.schema.json" if definition else "scenario.schema.json")
    in_force = handle_errors(suite.definition)(pipeline_file)
    click.echo(resources.schema_text(name, in_force), nl=False)

"""`ye-run list`: the scenarios a selection picks, with what they will do; no database."""

from __future__ import annotations

import json
from pathlib import Path

import click

from runner.cli import config, options
from runner.cli.common import handle_errors
from runner.engine import applicable
from runner.report import table
from runner.scenario import suite as suite_module

COLUMNS = (table.Column("name"), table.Column("jobs", right=True), table.Column("var", right=True),
           table.Column("mode"), table.Column("longest", right=True), table.Column("tags"), table.Column("file"),
           table.Column(""))


@click.command("list")
@click.argument("paths", nargs=-1, metavar="PATH...")
@options.selection
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of a table.")
@options.pipeline_file
@options.variables
@config.project_config
def list_scenarios(paths: tuple[str, ...], tags: tuple[str, ...], skip_tags: tuple[str, ...], keyword: str | None,
                   shard: str | None, as_json: bool, pipeline_file: Path | None, variables: tuple[str, ...],
                   project: config.Applied) -> None:
    """List the scenarios `ye-run run` would run with the same selection options; touches no database.

    Every file is validated first. For each scenario: name, file, tags, jobs, variants per job,
    mode, and the longest it can take (from its mode and its timeouts); a scenario that only
    ye-run's reference pipeline can run (it injects faults into it) says so: against a real
    pipeline it is not run. --json also names each scenario's pipeline definition. PATH...,
    the tags and the definition default to the project config's (docs/config.md).
    """
    handle_errors(_list)(list(paths), tags, skip_tags, keyword, shard, as_json, pipeline_file, variables, project)


def _list(paths: list[str], tags: tuple[str, ...], skip_tags: tuple[str, ...], keyword: str | None,
          shard: str | None, as_json: bool, pipeline_file: Path | None, variables: tuple[str, ...],
          project: config.Applied) -> None:
    chosen = suite_module.suite(suite_module.Request(tuple(paths), pipeline_file, variables, tags, skip_tags, keyword,
                                                     shard, folders=project.folders,
                                                     pipeline_by=project.pipeline_by))
    if chosen.error is not None:
        raise chosen.error
    rows = [describe(s) for s in chosen.scenarios]
    if as_json:
        click.echo(json.dumps({"scenarios": rows}, indent=2, ensure_ascii=False))
        return
    for line in table.lines(COLUMNS, [_cells(row) for row in rows]):
        click.echo(line)
    click.echo(f"{len(rows)} scenario(s) selected of {chosen.loaded}", err=True)


def _cells(row: dict) -> list[str]:  # type: ignore[type-arg]
    from runner.durations import format_seconds

    return [row["name"], "-" if row["jobs"] is None else str(row["jobs"]), str(row["variants"]), row["mode"],
            format_seconds(row["longest"]), ",".join(row["tags"]) or "-", row["file"],
            "[reference pipeline only]" if row["reference_only"] else ""]


def describe(scenario) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """What `list` shows of one scenario."""
    return {"name": scenario.name, "file": str(scenario.path), "tags": list(scenario.tags),
            "jobs": scenario.mode.job_limit, "variants": scenario.variants, "mode": scenario.mode.type,
            "longest": longest(scenario), "reference_only": applicable.reference_only(scenario),
            "pipeline": scenario.definition.source}


def longest(scenario) -> float:  # type: ignore[no-untyped-def]
    """The most a scenario can take, in seconds: job creation by its mode, then one job's timeout."""
    mode, job = scenario.mode, scenario.timeouts.job if scenario.observe else 0.0
    jobs = mode.job_limit
    if mode.type == "once":
        return job
    if mode.type == "wait_for_completion":
        return mode.duration + job if mode.duration is not None else (jobs or 1) * job
    creating = mode.duration if mode.duration is not None else ((jobs or 1) - 1) * mode.interval
    return creating + job

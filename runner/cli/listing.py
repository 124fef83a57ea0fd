"""`ye-run list`: the scenarios a selection picks, with what they will do; no database."""

from __future__ import annotations

import json
from pathlib import Path

import click

from runner.cli import options
from runner.cli.common import handle_errors
from runner.engine import applicable
from runner.scenario import suite as suite_module


@click.command("list")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@options.selection
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of a table.")
@options.pipeline_file
@options.variables
def list_scenarios(paths: tuple[str, ...], tags: tuple[str, ...], skip_tags: tuple[str, ...], keyword: str | None,
                   shard: str | None, as_json: bool, pipeline_file: Path | None, variables: tuple[str, ...]) -> None:
    """List the scenarios `ye-run run` would run with the same selection options; touches no database.

    Every file is validated first. For each scenario: name, file, tags, jobs, variants per job,
    mode, and the longest it can take (from its mode and its timeouts); a scenario that only
    ye-run's reference pipeline can run (it injects faults into it) says so: against a real
    pipeline it is not run.
    """
    handle_errors(_list)(list(paths), tags, skip_tags, keyword, shard, as_json, pipeline_file, variables)


def _list(paths: list[str], tags: tuple[str, ...], skip_tags: tuple[str, ...], keyword: str | None,
          shard: str | None, as_json: bool, pipeline_file: Path | None, variables: tuple[str, ...]) -> None:
    from runner.durations import format_seconds

    chosen = suite_module.suite(suite_module.Request(tuple(paths), pipeline_file, variables, tags, skip_tags, keyword,
                                                     shard))
    if chosen.error is not None:
        raise chosen.error
    rows = [describe(s) for s in chosen.scenarios]
    if as_json:
        click.echo(json.dumps({"scenarios": rows}, indent=2, ensure_ascii=False))
        return
    header = f"{'name':28} {'jobs':>5} {'var':>4} {'mode':20} {'longest':>8}  tags  file"
    click.echo(header)
    for row in rows:
        jobs = "-" if row["jobs"] is None else str(row["jobs"])
        only = "  [reference pipeline only]" if row["reference_only"] else ""
        click.echo(f"{row['name'][:28]:28} {jobs:>5} {row['variants']:>4} {row['mode']:20} "
                   f"{format_seconds(row['longest']):>8}  {','.join(row['tags']) or '-'}  {row['file']}{only}")
    click.echo(f"{len(rows)} scenario(s) selected of {chosen.loaded}", err=True)


def describe(scenario) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """What `list` shows of one scenario."""
    return {"name": scenario.name, "file": str(scenario.path), "tags": list(scenario.tags),
            "jobs": scenario.mode.job_limit, "variants": scenario.variants, "mode": scenario.mode.type,
            "longest": longest(scenario), "reference_only": applicable.reference_only(scenario)}


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

"""What `run` learns from past runs before a database opens: --last-failed-from and --shard-durations read a JSON
report here; --last-failed and durations of the run registry are read by the session (`engine.narrow`)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from runner.engine.narrow import Narrowing, narrow
from runner.errors import ExitCode
from runner.scenario import select
from runner.scenario.suite import Suite


def narrowing(shard: str | None, last_failed: bool, last_failed_from: Path | None,
              shard_durations: Path | None) -> Narrowing:
    """The options as the session applies them; InputError for a bad --shard or a report that does not load."""
    from runner.report import reportfile

    failed = None if last_failed_from is None else reportfile.failed(reportfile.load(last_failed_from))
    durations = None if shard_durations is None else reportfile.durations(reportfile.load(shard_durations))
    return Narrowing(last_failed=last_failed or last_failed_from is not None, failed=failed,
                     shard=select.parse_shard(shard) if shard else None, durations=durations,
                     durations_from=str(shard_durations) if shard_durations else "the run registry")


def for_dry_run(suite: Suite, asked: Narrowing) -> Suite:
    """The suite a dry run plans: narrowed without a database (no registry is read: a shard is split by count or
    --shard-durations, and --last-failed needs --last-failed-from)."""
    if asked.last_failed and asked.failed is None:
        click.echo("--dry-run reads no run registry: --last-failed is not applied (--last-failed-from is)", err=True)
        asked = dataclasses.replace(asked, last_failed=False)
    if asked.shard is not None and asked.durations is None:
        asked = dataclasses.replace(asked, durations={})
    narrowed = narrow(suite.scenarios, None, asked)
    for note in narrowed.notes:
        click.echo(note, err=True)
    return dataclasses.replace(suite, scenarios=tuple(narrowed.scenarios))


def exit_for_invalid(suite: Suite) -> None:
    """After a dry run's plans: the files that failed to load, located, and exit 2."""
    if suite.invalid:
        for problem in suite.invalid:
            click.echo(str(problem), err=True)
        sys.exit(ExitCode.BAD_INPUT)

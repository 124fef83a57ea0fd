"""`ye-run watch`: hold every job a live database runs to the pipeline's contract; read-only."""

from __future__ import annotations

import signal
import sys
import threading
from datetime import timedelta
from pathlib import Path

import click

from runner import durations
from runner.cli import options
from runner.cli.common import handle_errors
from runner.db.connect import Database, parse_url
from runner.errors import ExitCode, InputError
from runner.scenario import suite


def _duration(name: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return durations.parse(text)
    except ValueError as exc:
        raise InputError(f"{name}: {exc}") from None


@click.command()
@options.database_url
@click.option("--tenant", "tenants", multiple=True, metavar="PATTERN",
              help="Only jobs of tenants matching this glob (e.g. 'acme_*'; repeatable: any of them). "
                   "Default: every tenant.")
@click.option("--since", metavar="DURATION",
              help="First judge the jobs created in the last DURATION (e.g. 30m, 1h), read from the history table, "
                   "then go on live. Default: only jobs created after the watch starts.")
@click.option("--once", is_flag=True,
              help="Judge the jobs of the window up to now (with --since), then exit: 0 when every judged job "
                   "followed the contract, 1 when one did not. Jobs still in flight are counted, not judged.")
@click.option("--duration", metavar="DURATION", help="Stop after this long (e.g. 10m); default: until Ctrl+C/SIGTERM.")
@click.option("--jsonl", "jsonl", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
              help="Append one JSON line per judged job (outcome, violations with their diff) to FILE.")
@click.option("--max-retries", type=click.IntRange(0, 1000), default=2, show_default=True,
              help="Retries of a failed step the contract allows (the definition's retry rules say where a retry "
                   "goes; this says how often).")
@click.option("--settle", metavar="DURATION", default="10s", show_default=True,
              help="How long the job row may lag behind its variants once they are all at rest.")
@click.option("-q", "--quiet", is_flag=True, help="Violations and the total only (no line per failed job).")
@options.pipeline_file
def watch(database_url: str | None, tenants: tuple[str, ...], since: str | None, once: bool, duration: str | None,
          jsonl: Path | None, max_retries: int, settle: str, quiet: bool, pipeline_file: Path | None) -> None:
    """Watch a live database and judge every job against the pipeline definition.

    Reads every write of the pipeline's rows from ye-run's history table (`ye-run db init
    --runner-only` installs it) and judges each job with the checks scenarios use: order,
    skipped steps, going backwards, retries (where the definition's retry rules send them,
    at most --max-retries), a step done twice (the job-level double trigger), unknown steps
    or statuses, a step stuck past the definition's per-step timeout, the job row left
    behind its variants, a job-level step before every variant is done. A job is judged at
    its end state or at its first violation, reported at once with the expected-vs-observed
    diff. It writes nothing: a role with SELECT on jobs, jobs_variants and the ye_run_*
    tables (LISTEN needs no grant) is enough. Jobs ye-run seeded itself are flagged.

    \b
    Examples:
      ye-run watch --database-url postgresql://watch@staging-db/pipeline
      ye-run watch --database-url "$DB" --tenant 'acme_*' --jsonl watch.jsonl
      ye-run watch --database-url "$DB" --once --since 30m     # deploy gate: exit 0 or 1
      ye-run watch --database-url "$DB" --since 1h --duration 10m --pipeline-file pipeline.yaml

    \b
    Exit codes: 0 every judged job followed the contract; 1 one did not; 2 bad input, or
    no history table; 3 the database is unreachable; 130 interrupted before it started.
    Ctrl+C or SIGTERM ends a watch normally (the total, then 0 or 1).
    """
    handle_errors(_watch)(database_url, tenants, since, once, duration, jsonl, max_retries, settle, quiet,
                          pipeline_file)


def _watch(database_url: str | None, tenants: tuple[str, ...], since: str | None, once: bool, duration: str | None,
           jsonl: Path | None, max_retries: int, settle: str, quiet: bool, pipeline_file: Path | None) -> None:
    from runner.watch.loop import Watch, WatchOptions
    from runner.watch.output import JsonLines, console

    if not database_url:
        raise InputError("watch needs --database-url (or YE_DATABASE_URL): the database the pipeline runs on")
    if once and since is None:
        raise InputError("--once judges a window that has already happened: give it --since (e.g. --since 30m)")
    since_seconds = _duration("--since", since)
    settings = WatchOptions(definition=suite.definition(pipeline_file), tenants=tenants,
                            since=timedelta(seconds=since_seconds) if since_seconds is not None else None, once=once,
                            duration=_duration("--duration", duration), max_retries=max_retries,
                            settle=_duration("--settle", settle) or 0.0)
    database = Database(parse_url(database_url))
    sinks = [console(lambda line: click.echo(line), show_failed=not quiet)]
    lines = JsonLines(jsonl) if jsonl is not None else None
    if lines is not None:
        sinks.append(lines)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    runner = Watch(database, settings, sinks, stop)
    scope = ", ".join(tenants) if tenants else "every tenant"
    window = f"jobs created in the last {since}, then live" if since and not once else \
        f"jobs created in the last {since}" if since else "jobs created from now on"
    click.echo(f"watch: {database.display}: {window}; {scope}; definition {settings.definition.source}"
               + ("" if once else "; Ctrl+C to stop"), err=True)
    try:
        totals = runner.run()
    finally:
        if lines is not None:
            lines.close()
    for line in totals.lines():
        click.echo(line)
    sys.exit(ExitCode.FAILED if totals.violations else ExitCode.PASSED)

"""`ye-run watch`: hold every job a live database runs to the pipeline's contract; read-only."""

from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from runner import durations
from runner.cli import options
from runner.cli.common import handle_errors
from runner.db.connect import Database, parse_url
from runner.errors import ExitCode, InputError
from runner.scenario import suite
from runner.watch.reports import ReportPaths, Setup, WatchReport

if TYPE_CHECKING:
    from runner.watch.loop import Watch
    from runner.watch.metrics import WatchMetrics


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
@click.option("--source", "source", type=click.Choice(["auto", "history", "listen"]), default="auto",
              show_default=True,
              help="Where writes are read: the history table (every write), or LISTEN on the pipeline's channels "
                   "plus reconciling reads of the rows in flight (no install needed; writes between two reads can "
                   "be missed, a state written twice is not seen, no --since). auto: the history where installed.")
@click.option("--once", is_flag=True,
              help="Judge the jobs of the window up to now (with --since), then exit: 0 when every judged job "
                   "followed the contract, 1 when one did not. Jobs still in flight are counted, not judged.")
@click.option("--duration", metavar="DURATION", help="Stop after this long (e.g. 10m); default: until Ctrl+C/SIGTERM.")
@click.option("--jsonl", "jsonl", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
              help="Append one JSON line per judged job (outcome, violations with their diff) to FILE.")
@click.option("--junit", "junit_path", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
              help="Write JUnit XML when the watch ends (whatever ends it): a testcase per judged job listed.")
@click.option("--json", "json_path", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the JSON report (the run's format: `ye-run report` reads it) when the watch ends.")
@click.option("--html", "html_path", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the HTML report when the watch ends.")
@click.option("--metrics-port", type=int, metavar="PORT",
              help="Serve Prometheus metrics on this port (0: any free port, printed): jobs judged by outcome, "
                   "violations by kind and step, jobs in flight per step, step latency histograms.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, metavar="HOST",
              help="The address --metrics-port listens on (0.0.0.0: every interface).")
@click.option("--progress", is_flag=True,
              help="Print the jobs in flight per step (at most every 10s, when it changed) even when stdout is not "
                   "a terminal; on a terminal it is on unless -q.")
@click.option("--reconnect-window", metavar="DURATION",
              help="How long a lost database is waited for before the watch ends with an error (exit 3); "
                   "default: for ever (--once: 30s).")
@click.option("--max-retries", type=click.IntRange(0, 1000), default=2, show_default=True,
              help="Retries of a failed step the contract allows (the definition's retry rules say where a retry "
                   "goes; this says how often).")
@click.option("--settle", metavar="DURATION", default="10s", show_default=True,
              help="How long the job row may lag behind its variants once they are all at rest.")
@click.option("-q", "--quiet", is_flag=True,
              help="Violations and the total only (no line per failed job, no progress line).")
@options.pipeline_file
def watch(database_url: str | None, tenants: tuple[str, ...], since: str | None, once: bool, duration: str | None,
          jsonl: Path | None, junit_path: Path | None, json_path: Path | None, html_path: Path | None,
          metrics_port: int | None, metrics_host: str, progress: bool, reconnect_window: str | None,
          max_retries: int, settle: str, quiet: bool, pipeline_file: Path | None, source: str = "auto") -> None:
    """Watch a live database and judge every job against the pipeline definition.

    Reads every write of the pipeline's rows from ye-run's history table (`ye-run db init
    --runner-only` installs it) and judges each job with the checks scenarios use: order,
    skipped steps, going backwards, retries (where the definition's retry rules send them,
    at most --max-retries), a step done twice (the job-level double trigger), unknown steps
    or statuses, a step stuck past the definition's per-step timeout, the job row left
    behind its variants, a job-level step before every variant is done. A job is judged at
    its end state or at its first violation, reported at once with the expected-vs-observed
    diff. It writes nothing: a role with SELECT on jobs, jobs_variants and the ye_run_*
    tables (LISTEN needs no grant) is enough. Jobs ye-run seeded itself are flagged. Without
    the history table it watches with LISTEN and reconciling reads (--source), and says so.

    \b
    Examples:
      ye-run watch --database-url postgresql://watch@staging-db/pipeline
      ye-run watch --database-url "$DB" --tenant 'acme_*' --jsonl watch.jsonl
      ye-run watch --database-url "$DB" --once --since 30m     # deploy gate: exit 0 or 1
      ye-run watch --database-url "$DB" --since 1h --duration 10m --pipeline-file pipeline.yaml
      ye-run watch --database-url "$DB" --metrics-port 9464 --junit watch.xml --html watch.html

    \b
    Exit codes: 0 every judged job followed the contract; 1 one did not; 2 bad input, or
    no history table for --since or --source history; 3 the database is unreachable; 130
    interrupted before it started.
    Ctrl+C or SIGTERM ends a watch normally (the total, then 0 or 1). --junit, --json and
    --html are written however it ends (an error ending it: the report says error).
    """
    extras = Extras(ReportPaths(junit_path, json_path, html_path), metrics_port, metrics_host,
                    not quiet and (progress or (sys.stdout.isatty() and not os.environ.get("CI"))),
                    reconnect_window)
    handle_errors(_watch)(database_url, tenants, since, once, duration, jsonl, max_retries, settle, quiet,
                          pipeline_file, extras, source)


@dataclass(frozen=True)
class Extras:
    """The watch's outputs beside the console and --jsonl: report files, metrics, the progress line."""

    reports: ReportPaths = ReportPaths()
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    progress: bool = False
    reconnect_window: str | None = None


def _attach(runner: Watch, extras: Extras, setup: Setup) -> tuple[WatchReport, WatchMetrics | None]:
    """The report (written if asked for), the metrics (if asked for), the step latencies they share, and the
    progress line, wired to the watch."""
    from runner.watch.latency import StepTimer
    from runner.watch.metrics import WatchMetrics
    from runner.watch.progress import ProgressLine

    report = WatchReport(setup)
    metrics = WatchMetrics(setup.definition) if extras.metrics_port is not None else None
    listeners = [report.step_latency] + ([metrics.step_latency] if metrics is not None else [])
    if extras.reports or metrics is not None:
        report.attach(runner)
        runner.readers.append(StepTimer(setup.definition, listeners))
    if metrics is not None:
        metrics.attach(runner)
    if extras.progress:
        runner.turns.append(ProgressLine(lambda line: click.echo(line)))
    return report, metrics


def _watch(database_url: str | None, tenants: tuple[str, ...], since: str | None, once: bool, duration: str | None,
           jsonl: Path | None, max_retries: int, settle: str, quiet: bool, pipeline_file: Path | None,
           extras: Extras | None = None, source: str = "auto") -> None:
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
                            settle=_duration("--settle", settle) or 0.0, source=source)
    database = Database(parse_url(database_url))
    sinks = [console(lambda line: click.echo(line), show_failed=not quiet)]
    lines = JsonLines(jsonl) if jsonl is not None else None
    if lines is not None:
        sinks.append(lines)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    extras = extras or Extras()
    runner = Watch(database, settings, sinks, stop,
                   reconnect_window=_duration("--reconnect-window", extras.reconnect_window))
    runner.opened.append(lambda opened: click.echo(f"watch: source: {opened.source.description}", err=True))
    scope = ", ".join(tenants) if tenants else "every tenant"
    window = f"jobs created in the last {since}, then live" if since and not once else \
        f"jobs created in the last {since}" if since else "jobs created from now on"
    report, metrics = _attach(runner, extras, Setup(database.display, settings.definition, f"{window}; {scope}",
                                                    tenants, max_retries, settings.settle))
    server = None
    try:
        if metrics is not None and extras.metrics_port is not None:
            server = metrics.serve(extras.metrics_host, extras.metrics_port)
            click.echo(f"watch: metrics on {server.url}", err=True)
        click.echo(f"watch: {database.display}: {window}; {scope}; definition {settings.definition.source}"
                   + ("" if once else "; Ctrl+C to stop"), err=True)
        totals = runner.run()
    except BaseException as exc:
        try:
            report.save(extras.reports, runner.totals(), exc)
        except InputError as unwritten:
            click.echo(f"ye-run: error: {unwritten}", err=True)
        raise
    finally:
        if lines is not None:
            lines.close()
        if server is not None:
            server.close()
    for line in totals.lines():
        click.echo(line)
    report.save(extras.reports, totals)
    sys.exit(ExitCode.FAILED if totals.violations else ExitCode.PASSED)

"""`ye-run run SCENARIO...` (also `ye-run SCENARIO...`): run scenarios and report."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import click

from runner import durations
from runner.cli import common, options
from runner.cli.common import EXIT_CODES_HELP, handle_errors
from runner.db.requirements import JOB_CHANNEL, VARIANT_CHANNEL
from runner.engine import plan as plan_module
from runner.engine.run import RunSettings
from runner.engine.session import Session, SessionOptions
from runner.errors import ExitCode, InputError, YeRunError
from runner.report import json_report, junit
from runner.report.console import ConsoleReporter
from runner.report.json_report import JsonReporter
from runner.report.junit import JUnitReporter
from runner.scenario.model import Scenario


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("scenarios", nargs=-1, required=True, metavar="SCENARIO...")
@options.database_url
@options.ephemeral
@click.option("-j", "--parallel", type=click.IntRange(1, 64), default=1, show_default=True, metavar="N",
              help="Run up to N scenarios at once (each keeps to its own jobs; verdicts do not depend on N).")
@options.selection
@click.option("--fail-fast", is_flag=True, help="After the first failed scenario, start no new ones (those running "
                                                 "finish; the rest are reported as not run).")
@click.option("--dry-run", is_flag=True, help="Print the plan (jobs, rows per table, steps, timeouts); touch nothing.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write JUnit XML: one testsuite per scenario, one testcase per job (names stable across runs).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the full JSON report (schemas/report.schema.json).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the HTML report: one self-contained page with a timeline per job.")
@click.option("-v", "--verbose", count=True, help="A line per transition (-vv: also the pipeline's own log).")
@click.option("-q", "--quiet", is_flag=True, help="Print only failures and the grand total.")
@click.option("--observe", type=click.Choice(["auto", "history", "listen"]), default="auto", show_default=True,
              help="How to observe: ye-run's history table (complete), or LISTEN + reconciling reads.")
@click.option("--variant-channel", envvar="YE_VARIANT_CHANNEL", default=VARIANT_CHANNEL, show_default=True,
              help="NOTIFY channel of variant changes.")
@click.option("--job-channel", envvar="YE_JOB_CHANNEL", default=JOB_CHANNEL, show_default=True,
              help="NOTIFY channel of job changes.")
@click.option("--reference-pipeline/--no-reference-pipeline", default=None,
              help="Run the built-in reference pipeline in-process, driving this run's jobs. Default: on for the "
                   "embedded server, off with --database-url (a real pipeline is expected there).")
@click.option("--asset-dir", envvar="YE_ASSET_DIR", type=click.Path(file_okay=False, path_type=Path),
              help="Where seeded images are stored (default: ~/.cache/ye-run/assets).")
@click.option("--asset-base-url", envvar="YE_ASSET_BASE_URL",
              help="image_url prefix for stored images (default: file:// URLs of --asset-dir).")
@click.option("--job-settle", metavar="DURATION", default="5s", show_default=True,
              help="How long the job row may lag behind its variants before its state is judged wrong; a job is "
                   "judged at once when its row reaches the state the pipeline definition predicts.")
@click.option("--reconnect-window", metavar="DURATION", default="30s", show_default=True,
              help="How long a run waits for a lost database (a restart) to come back before it ends with an "
                   "error (exit 3); meanwhile it says so, and then goes on where it was.")
@click.option("--max-connections", metavar="N", type=click.IntRange(min=1), envvar="YE_MAX_CONNECTIONS",
              help="Hold at most N connections at once. Whatever N, ye-run leaves 20% of the server's connections "
                   "free for others; scenarios wait for connections, they never fail for want of them.")
@options.pipeline_file
@options.variables
@options.tenant_pattern
@options.force
def run(scenarios: tuple[str, ...], database_url: str | None, ephemeral: bool, parallel: int,
        tags: tuple[str, ...], skip_tags: tuple[str, ...], keyword: str | None, shard: str | None, fail_fast: bool,
        dry_run: bool, junit_path: Path | None, json_path: Path | None, html_path: Path | None, verbose: int,
        quiet: bool, observe: str,
        variant_channel: str, job_channel: str, reference_pipeline: bool | None, asset_dir: Path | None,
        asset_base_url: str | None, job_settle: str, reconnect_window: str, max_connections: int | None,
        pipeline_file: Path | None, variables: tuple[str, ...],
        tenant_pattern: str | None, force: bool) -> None:
    """Run scenarios: seed, (simulate img_gen,) observe every transition, assert, report, clean up.

    SCENARIO is a file, a directory (every *.yaml in it, partials named _*.yaml aside) or a
    glob. All scenarios are validated before anything is seeded, and checked against the
    database before any is seeded. With no --database-url, an embedded PostgreSQL and the
    built-in reference pipeline are started. Ctrl+C stops job creation, writes the partial
    report and applies the cleanup policy (exit 130). The last line is always the grand total.

    \b
    Examples:
      ye-run run scenarios/ -j 4 --junit junit.xml --json report.json
      ye-run run scenarios/ --tag smoke -k "not slow"
      ye-run run scenarios/ --shard 2/4          # the second of four CI machines
    """
    try:
        chosen = _load_or_report(lambda: common.choose(common.load_all(list(scenarios), pipeline_file, variables),
                                                       tags, skip_tags, keyword, shard), junit_path, json_path)
    except KeyboardInterrupt:  # Ctrl+C while loading: the reports asked for still say so
        _interrupted_before_start(junit_path, json_path, html_path)
        raise
    if dry_run:
        label = handle_errors(_database_label)(database_url, ephemeral)
        for scenario in chosen:
            click.echo(handle_errors(lambda s=scenario: plan_module.render(plan_module.build(s, label)))())
        return
    settle = handle_errors(_duration)("--job-settle", job_settle)
    window = handle_errors(_duration)("--reconnect-window", reconnect_window)
    settings = RunSettings(observe=observe, variant_channel=variant_channel, job_channel=job_channel,
                           tenant_pattern=tenant_pattern, force=force, asset_base_url=asset_base_url,
                           job_settle=settle, reconnect_window=window)
    if asset_dir is not None:
        settings = dataclasses.replace(settings, asset_dir=asset_dir)
    _configure_logging(verbose)
    console = ConsoleReporter(sys.stdout, 0 if quiet else 1 + verbose,
                              tty=sys.stdout.isatty() and not os.environ.get("CI"))
    reporters: list = [console]
    reporters += [JUnitReporter(junit_path)] if junit_path else []
    reporters += [JsonReporter(json_path)] if json_path else []
    if html_path:
        from runner.report.html import HtmlReporter

        reporters.append(HtmlReporter(html_path))
    options_ = SessionOptions(database_url, ephemeral, settings, reference_pipeline, parallel, fail_fast,
                              max_connections)
    sys.exit(handle_errors(_run_session)(chosen, options_, reporters))


def _run_session(chosen: list[Scenario], options_: SessionOptions, reporters: list) -> int:  # type: ignore[type-arg]
    stop, hurry = threading.Event(), threading.Event()
    restore = _install_signals(stop, hurry)
    try:
        outcome = Session(chosen, options_, reporters, stop, hurry).run()
    finally:
        restore()
    if outcome.error is not None:
        outcome.error.exit_code = outcome.exit_code
        raise outcome.error
    return outcome.exit_code


def _duration(option: str, text: str) -> float:
    try:
        return durations.parse(text)
    except ValueError as exc:
        raise InputError(f"{option}: {exc}") from None


def _load_or_report(load: Callable[[], list[Scenario]], junit_path: Path | None,
                    json_path: Path | None) -> list[Scenario]:
    """The selected scenarios; when a file is invalid or the selection is refused (two scenarios of one name),
    the reports asked for still say so (CI finds a report)."""
    try:
        return load()
    except YeRunError as exc:
        started = datetime.now(timezone.utc)
        invalid: dict[str, list[str]] = {}
        for problem in getattr(exc, "problems", []):
            invalid.setdefault(problem.file, []).append(str(problem))
        error = None if invalid else str(exc)
        if junit_path:
            junit.write(junit_path, [], error, invalid)
        if json_path:
            text = error or "\n".join(line for lines in invalid.values() for line in lines)
            json_report.write(json_path, json_report.document([], exc.exit_code, started, datetime.now(timezone.utc),
                                                              text))
        return handle_errors(_raise)(exc)


def _interrupted_before_start(junit_path: Path | None, json_path: Path | None, html_path: Path | None) -> None:
    """The reports of a run interrupted before any scenario started: exit 130, nothing run, nothing seeded."""
    now = datetime.now(timezone.utc)
    text = "interrupted before the run started (nothing was seeded)"
    doc = json_report.document([], ExitCode.INTERRUPTED, now, now, text)
    with contextlib.suppress(OSError):  # the exit is 130 whatever happens here
        if junit_path:
            junit.write(junit_path, [], text)
        if json_path:
            json_report.write(json_path, doc)
        if html_path:
            from runner.report import html

            html.write(html_path, doc)


def _raise(exc: YeRunError) -> list[Scenario]:
    raise exc


def _database_label(url: str | None, ephemeral: bool) -> str:
    if url:
        from runner.db.connect import mask, parse_url

        return mask(parse_url(url))
    return "embedded PostgreSQL (temporary)" if ephemeral else "embedded PostgreSQL (~/.cache/ye-run/pg)"


def _configure_logging(verbose: int) -> None:
    logging.basicConfig(level=logging.INFO if verbose >= 2 else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    if verbose < 2:
        logging.getLogger("ye_run.observe").setLevel(logging.ERROR)  # the console reports reconnects itself


def _install_signals(stop: threading.Event, hurry: threading.Event):  # type: ignore[no-untyped-def]
    """SIGINT, SIGTERM and SIGHUP (a closed terminal) stop the run gracefully: no new jobs, the partial report,
    the cleanup policy. A second one also skips what is left of cleanup (the rows are kept and the run says
    how to remove them); the reports are still written and the exit code is 130. Returns a function restoring
    the previous handlers."""
    def handler(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if not stop.is_set():
            stop.set()
            click.echo(f"ye-run: {name}: stopping; writing the partial report (again to skip cleanup)", err=True)
        elif not hurry.is_set():
            hurry.set()
            click.echo(f"ye-run: {name} again: skipping what is left of cleanup; the reports are still written",
                       err=True)

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, handler) for sig in signals}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore

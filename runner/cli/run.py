"""`ye-run run SCENARIO...` (also `ye-run SCENARIO...`): run scenarios and report."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from typing import TYPE_CHECKING

import click

from runner import durations
from runner.cli import config, options
from runner.cli.common import EXIT_CODES_HELP, handle_errors
from runner.db.requirements import JOB_CHANNEL, VARIANT_CHANNEL
from runner.errors import InputError, YeRunError

if TYPE_CHECKING:
    from runner.engine.narrow import Narrowing
    from runner.engine.run import RunSettings
    from runner.engine.session import SessionOptions
    from runner.scenario import suite as suite_module
    from runner.scenario.suite import Suite


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("scenarios", nargs=-1, metavar="SCENARIO...")
@options.database_url
@options.ephemeral
@click.option("-j", "--parallel", type=click.IntRange(1, 64), default=1, show_default=True, metavar="N",
              help="Run up to N scenarios at once (each keeps to its own jobs; verdicts do not depend on N).")
@options.selection
@options.history
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
@config.project_config
def run(scenarios: tuple[str, ...], database_url: str | None, ephemeral: bool, parallel: int,
        tags: tuple[str, ...], skip_tags: tuple[str, ...], keyword: str | None, shard: str | None, fail_fast: bool,
        dry_run: bool, junit_path: Path | None, json_path: Path | None, html_path: Path | None, verbose: int,
        quiet: bool, observe: str,
        variant_channel: str, job_channel: str, reference_pipeline: bool | None, asset_dir: Path | None,
        asset_base_url: str | None, job_settle: str, reconnect_window: str, max_connections: int | None,
        pipeline_file: Path | None, variables: tuple[str, ...],
        tenant_pattern: str | None, force: bool, project: config.Applied, last_failed: bool,
        last_failed_from: Path | None, reruns: int, shard_durations: Path | None) -> None:
    """Run scenarios: seed, (simulate img_gen,) observe every transition, assert, report, clean up.

    SCENARIO is a file, a directory (every *.yaml in it, partials named _*.yaml aside) or a
    glob. All scenarios are validated before anything is seeded, and checked against the
    database before any is seeded; a file that fails to load is an error entry in every report
    (exit 2) and the others still run. With no --database-url, an embedded PostgreSQL and the
    built-in reference pipeline are started. Ctrl+C stops job creation, writes the partial
    report and applies the cleanup policy (exit 130). The last line is always the grand total.

    Defaults (SCENARIO..., the database, the pipeline definition, the reports, -j, tags) may
    come from the project config, ye-run.toml or pyproject.toml [tool.ye-run] (docs/config.md);
    flags override it and --dry-run shows it. A scenario may name the pipeline definition it is
    written for (`pipeline_file:`); --pipeline-file is the one of scenarios that name none.

    \b
    Examples:
      ye-run run                                 # the night the project config describes
      ye-run run scenarios/ -j 4 --junit junit.xml --json report.json
      ye-run run scenarios/ --tag smoke -k "not slow"
      ye-run run scenarios/ --shard 2/4          # the second of four CI machines
      ye-run run scenarios/ --last-failed --reruns 2
    """
    handle_errors(_writable)({"--junit": junit_path, "--json": json_path, "--html": html_path})
    if not database_url and not dry_run and not ephemeral:
        from runner.db import embedded

        embedded.start_early()  # the server starts while the engine loads
        click.get_current_context().call_on_close(embedded.forget_early)  # not claimed (bad input): left
    from runner.engine.session import SessionOptions
    from runner.scenario import suite as suite_module

    request = suite_module.Request(scenarios, pipeline_file, variables, tags, skip_tags, keyword, None,
                                   side_by_side=parallel > 1, keep_going=True, folders=project.folders,
                                   pipeline_by=project.pipeline_by)
    reporters = _reporters(junit_path, json_path, html_path, verbose, quiet)
    suite = _select(request, reporters)
    narrowing, suite = _narrowing(suite, shard, last_failed, last_failed_from, shard_durations)
    if dry_run and suite.error is None:
        from runner.cli import history

        suite = handle_errors(history.for_dry_run)(suite, narrowing)
        _dry_run(suite, database_url, ephemeral, project)
        history.exit_for_invalid(suite)
        return
    options_ = SessionOptions()  # a refused suite opens nothing: its error comes before any option's
    if suite.error is None:
        settings = handle_errors(_settings)(observe, variant_channel, job_channel, tenant_pattern, force,
                                            asset_base_url, asset_dir, job_settle, reconnect_window)
        options_ = SessionOptions(database_url, ephemeral, settings, reference_pipeline, parallel, fail_fast,
                                  max_connections, reruns, narrowing)
    sys.exit(handle_errors(_run_session)(suite, options_, reporters))


def _narrowing(suite: Suite, shard: str | None, last_failed: bool, last_failed_from: Path | None,
               shard_durations: Path | None) -> tuple[Narrowing, Suite]:
    """--last-failed and --shard as the session applies them; a bad one refuses the suite, in every report."""
    from runner.cli import history
    from runner.engine.narrow import Narrowing

    if suite.error is not None:
        return Narrowing(), suite
    try:
        return history.narrowing(shard, last_failed, last_failed_from, shard_durations), suite
    except YeRunError as exc:
        return Narrowing(), dataclasses.replace(suite, error=exc)


def _select(request: suite_module.Request, reporters: list) -> Suite:  # type: ignore[type-arg]
    """The suite to run; Ctrl+C while the files load still reaches every report (exit 130, nothing seeded)."""
    from runner.engine.session import Session, SessionOptions
    from runner.scenario import suite as suite_module

    try:
        return suite_module.suite(request)
    except KeyboardInterrupt:
        Session(suite_module.interrupted(), SessionOptions(), reporters).run()
        raise


def _dry_run(suite: Suite, database_url: str | None, ephemeral: bool, project: config.Applied) -> None:
    """The project config in force, then each scenario's plan; nothing is touched."""
    from runner.engine import plan as plan_module

    for line in project.lines():
        click.echo(line)
    label = handle_errors(_database_label)(database_url, ephemeral)
    for scenario in suite.scenarios:
        click.echo(handle_errors(lambda s=scenario: plan_module.render(plan_module.build(s, label)))())


def _settings(observe: str, variant_channel: str, job_channel: str, tenant_pattern: str | None, force: bool,
              asset_base_url: str | None, asset_dir: Path | None, job_settle: str,
              reconnect_window: str) -> RunSettings:
    """What every scenario run is told (InputError for a duration that does not parse)."""
    from runner.engine.run import RunSettings

    settings = RunSettings(observe=observe, variant_channel=variant_channel, job_channel=job_channel,
                           tenant_pattern=tenant_pattern, force=force, asset_base_url=asset_base_url,
                           job_settle=_duration("--job-settle", job_settle),
                           reconnect_window=_duration("--reconnect-window", reconnect_window))
    return settings if asset_dir is None else dataclasses.replace(settings, asset_dir=asset_dir)


def _writable(reports: dict[str, Path | None]) -> None:
    """Each report can be written where it is asked for, and no two share a file: found now, not after the run
    (InputError, exit 2, nothing seeded). A folder not there yet is made at the end, as the reports are written."""
    seen: dict[Path, str] = {}
    for option, path in reports.items():
        if path is None:
            continue
        resolved = path.expanduser().resolve()
        if resolved in seen:
            raise InputError(f"{seen[resolved]} and {option} name the same file, {path}: give each its own")
        seen[resolved] = option
        if resolved.is_dir():
            raise InputError(f"{option} {path}: a directory; give a file name")
        folder = next((p for p in resolved.parents if p.exists()), None)
        try:
            if folder is None or not folder.is_dir():
                raise OSError("no folder to write it in")
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as exc:
            raise InputError(f"{option} {path}: cannot write there ({exc.strerror or exc})") from None


def _reporters(junit_path: Path | None, json_path: Path | None, html_path: Path | None, verbose: int,
               quiet: bool) -> list:  # type: ignore[type-arg]
    """The console (and the log) at the verbosity asked for, then each report file asked for."""
    from runner.report.console import ConsoleReporter
    from runner.report.json_report import JsonReporter
    from runner.report.junit import JUnitReporter

    _configure_logging(verbose)
    console = ConsoleReporter(sys.stdout, 0 if quiet else 1 + verbose,
                              tty=sys.stdout.isatty() and not os.environ.get("CI"))
    reporters: list = [console]  # type: ignore[type-arg]
    reporters += [JUnitReporter(junit_path)] if junit_path else []
    reporters += [JsonReporter(json_path)] if json_path else []
    if html_path:
        from runner.report.html import HtmlReporter

        reporters.append(HtmlReporter(html_path))
    return reporters


def _run_session(suite: Suite, options_: SessionOptions, reporters: list) -> int:  # type: ignore[type-arg]
    """The session, under the signal handlers; its error (a refused suite's too) is raised for handle_errors."""
    from runner.engine.session import Session

    stop, hurry = threading.Event(), threading.Event()
    restore = _install_signals(stop, hurry)
    try:
        outcome = Session(suite, options_, reporters, stop, hurry).run()
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


def _database_label(url: str | None, ephemeral: bool) -> str:
    if url:
        from runner.db.connect import mask, parse_url

        return mask(parse_url(url))
    if ephemeral:
        return "embedded PostgreSQL (temporary)"
    from runner.db.embedded import default_data_dir

    return f"embedded PostgreSQL ({default_data_dir()})"  # the directory in use: YE_EMBEDDED_DIR's, if set


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

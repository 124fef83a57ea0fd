"""`ye-run run SCENARIO...` (also `ye-run SCENARIO...`): run scenarios and report."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import click

from runner import bugs
from runner import durations
from runner.cli import common, options
from runner.cli.common import EXIT_CODES_HELP, handle_errors
from runner.db.requirements import JOB_CHANNEL, VARIANT_CHANNEL
from runner.db.target import open_database
from runner.engine import plan as plan_module
from runner.engine.events import Emitter
from runner.engine.results import ScenarioResult
from runner.engine.run import RunSettings, ScenarioRun, preflight
from runner.errors import ExitCode, InputError, ScenarioError, YeRunError
from runner.report import json_report, junit
from runner.report.console import ConsoleReporter
from runner.scenario import discover, loader
from runner.scenario.model import Scenario

_PRIORITY = [ExitCode.PASSED, ExitCode.FAILED, ExitCode.BAD_INPUT, ExitCode.INFRASTRUCTURE, ExitCode.INTERRUPTED,
             ExitCode.BUG]


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("scenarios", nargs=-1, required=True, metavar="SCENARIO...")
@options.database_url
@options.ephemeral
@click.option("--dry-run", is_flag=True, help="Print the plan (jobs, rows per table, steps, timeouts); touch nothing.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write JUnit XML: one testsuite per scenario, one testcase per job.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the full JSON report (schemas/report.schema.json).")
@click.option("-v", "--verbose", count=True, help="A line per transition (-vv: also the pipeline's own log).")
@click.option("-q", "--quiet", is_flag=True, help="Print only failures.")
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
@options.pipeline_file
@options.tenant_pattern
@options.force
def run(scenarios: tuple[str, ...], database_url: str | None, ephemeral: bool, dry_run: bool,
        junit_path: Path | None, json_path: Path | None, verbose: int, quiet: bool, observe: str,
        variant_channel: str, job_channel: str, reference_pipeline: bool | None, asset_dir: Path | None,
        asset_base_url: str | None, job_settle: str, pipeline_file: Path | None, tenant_pattern: str | None,
        force: bool) -> None:
    """Run scenarios: seed, (simulate img_gen,) observe every transition, assert, report, clean up.

    SCENARIO is a file, a directory (every *.yaml in it, partials named _*.yaml aside) or a
    glob. All scenarios are validated before anything is seeded. With no --database-url,
    an embedded PostgreSQL and the built-in reference pipeline are started. Ctrl+C stops
    job creation, writes the partial report and applies the cleanup policy (exit 130).
    """
    loaded = handle_errors(_load)(list(scenarios), pipeline_file)
    if dry_run:
        label = handle_errors(_database_label)(database_url, ephemeral)
        for scenario in loaded:
            click.echo(handle_errors(lambda s=scenario: plan_module.render(plan_module.build(s, label)))())
        return
    settle = handle_errors(_duration)("--job-settle", job_settle)
    settings = RunSettings(observe=observe, variant_channel=variant_channel, job_channel=job_channel,
                           tenant_pattern=tenant_pattern, force=force, asset_base_url=asset_base_url,
                           job_settle=settle)
    if asset_dir is not None:
        settings = dataclasses.replace(settings, asset_dir=asset_dir)
    verbosity = 0 if quiet else 1 + verbose
    _configure_logging(verbose)
    console = ConsoleReporter(sys.stdout, verbosity, tty=sys.stdout.isatty() and not os.environ.get("CI"))
    code = handle_errors(_run_all)(loaded, database_url, ephemeral, settings, reference_pipeline, console,
                                   junit_path, json_path)
    sys.exit(code)


def _duration(option: str, text: str) -> float:
    try:
        return durations.parse(text)
    except ValueError as exc:
        raise InputError(f"{option}: {exc}") from None


def _load(paths: list[str], pipeline_file: Path | None) -> list[Scenario]:
    """Every scenario, or every problem of every file at once (nothing is touched then)."""
    definition = common.definition(pipeline_file)
    files = discover.scenario_files(paths)
    loaded, problems = [], []
    for file in files:
        try:
            loaded.append(loader.load(file, definition))
        except ScenarioError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ScenarioError(problems)
    return loaded


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


def _run_all(loaded: list[Scenario], database_url: str | None, ephemeral: bool, settings: RunSettings,
             reference_pipeline: bool | None, console: ConsoleReporter, junit_path: Path | None,
             json_path: Path | None) -> int:
    stop = threading.Event()
    restore = _install_signals(stop)
    try:
        return _run_each(loaded, database_url, ephemeral, settings, reference_pipeline, console, junit_path,
                         json_path, stop)
    finally:
        restore()


def _run_each(loaded: list[Scenario], database_url: str | None, ephemeral: bool, settings: RunSettings,
              reference_pipeline: bool | None, console: ConsoleReporter, junit_path: Path | None,
              json_path: Path | None, stop: threading.Event) -> int:
    started = datetime.now(timezone.utc)
    results: list[ScenarioResult] = []
    codes: list[int] = []
    emit = Emitter([console])
    error: YeRunError | None = None
    try:
        with open_database(database_url, ephemeral) as database:
            wanted = database.embedded if reference_pipeline is None else reference_pipeline
            settings = dataclasses.replace(settings, reference_pipeline=wanted)
            preflight(loaded, database, settings)
            for scenario in loaded:
                if stop.is_set():
                    break
                runner = ScenarioRun(scenario, database, settings, emit, stop)
                result = runner.execute()
                results.append(result)
                codes.append(_code(result, runner.error))
    except YeRunError as exc:  # no database at all: CI still gets reports that say why
        error = exc
    except Exception as exc:  # a bug outside a scenario: the reports still say what ran
        error = bugs.record(exc, "running the scenarios")
    if stop.is_set():
        codes.append(ExitCode.INTERRUPTED)
    if error is not None:
        codes.append(error.exit_code)
    code = max(codes or [ExitCode.PASSED], key=_PRIORITY.index)
    _write_reports(junit_path, json_path, results, code, started, None if error is None else str(error))
    if error is not None:
        raise error
    return code


def _write_reports(junit_path: Path | None, json_path: Path | None, results: list[ScenarioResult], code: int,
                   started: datetime, error: str | None) -> None:
    if junit_path:
        junit.write(junit_path, results, error)
    if json_path:
        json_report.write(json_path, json_report.document(results, code, started, datetime.now(timezone.utc), error))


def _code(result: ScenarioResult, error: YeRunError | None) -> int:
    if error is not None:
        return error.exit_code
    return {"passed": ExitCode.PASSED, "seeded": ExitCode.PASSED, "failed": ExitCode.FAILED,
            "interrupted": ExitCode.INTERRUPTED}.get(result.outcome, ExitCode.BUG)


def _install_signals(stop: threading.Event):  # type: ignore[no-untyped-def]
    """SIGINT/SIGTERM stop the run gracefully (a second one aborts); returns a function restoring the old handlers."""
    def handler(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo(f"ye-run: {signal.Signals(signum).name}: stopping; writing the partial report "
                   "(again to abort at once)", err=True)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def register(group: click.Group) -> None:
    group.add_command(run)


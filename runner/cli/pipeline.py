"""`ye-run pipeline`: run the reference pipeline worker until Ctrl+C."""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
from pathlib import Path

import click

from runner.cli import options
from runner.cli.common import handle_errors
from runner.db import guard
from runner.db.target import open_database
from runner.errors import InputError
from runner.pipeline import config as pipeline_config
from runner.pipeline.scope import Scope
from runner.pipeline.worker import Worker
from runner.scenario import loader, suite

EXIT_CRASHED = 70
"""Exit code after the injected `crash` fault (EX_SOFTWARE): a supervisor restarts the worker."""


@click.command()
@options.database_url
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Latency and faults (YAML, see `ye-run schema --pipeline`).")
@click.option("--with-ye", is_flag=True, help="Also run the YE part: img_gen for (user_img_input, done) variants.")
@click.option("--tenant", help="Drive only this tenant's jobs.")
@click.option("--all-tenants", is_flag=True, help="Drive every tenant's jobs (needs --force).")
@options.tenant_pattern
@options.force
@click.option("-q", "--quiet", is_flag=True, help="No line per transition; only warnings and the summary.")
@options.pipeline_file
def pipeline(database_url: str | None, config_path: Path | None, with_ye: bool, tenant: str | None,
             all_tenants: bool, tenant_pattern: str | None, force: bool, quiet: bool,
             pipeline_file: Path | None) -> None:
    """Run the reference pipeline: a stand-in for the YE/YH parts, with latency and faults.

    It LISTENs on job_variant_state_changed and drives each variant that reaches
    (img_gen, done) through vlm_analyze ... iou_eval, then, on job_state_changed, the job
    row through the job-level steps (ad_copy_gen_kor, instagram_feed_gen), like the real
    listener; the steps come from the pipeline definition (--pipeline-file). By default it
    drives the jobs of test tenants only (the tenant guard's pattern). Prints one line per
    transition and a summary on exit (Ctrl+C). Exits 70 after an injected crash.
    """
    handle_errors(_pipeline)(database_url, config_path, with_ye, tenant, all_tenants, tenant_pattern, force, quiet,
                             pipeline_file)


def _pipeline(database_url: str | None, config_path: Path | None, with_ye: bool, tenant: str | None,
              all_tenants: bool, tenant_pattern: str | None, force: bool, quiet: bool,
              pipeline_file: Path | None) -> None:
    definition = suite.definition(pipeline_file)
    config = loader.load_pipeline_config(config_path, definition) if config_path else pipeline_config.PipelineConfig()
    if with_ye:
        config = dataclasses.replace(config, with_ye=True)
    scope = _scope(tenant, all_tenants, tenant_pattern, force)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(message)s")
    with open_database(database_url) as database:
        worker = Worker(database, config, scope, definition=definition)
        worker.start()
        click.echo(f"pipeline: driving {_describe(scope)} on {database.display} "
                   f"({config.slots} slots{', with YE' if config.with_ye else ''}); Ctrl+C to stop", err=True)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: worker.stopping.set())
        while not worker.wait(0.5):
            pass
        worker.stop()
    click.echo(worker.stats.summary(), err=True)
    if worker.crash is not None:
        sys.exit(EXIT_CRASHED)


def _scope(tenant: str | None, all_tenants: bool, pattern: str | None, force: bool) -> Scope:
    if tenant and all_tenants:
        raise InputError("give --tenant or --all-tenants, not both")
    if all_tenants:
        if not force:
            raise InputError("--all-tenants drives every tenant's jobs, real ones too: add --force if you mean it")
        return Scope()
    if tenant:
        guard.check_tenant(tenant, pattern, force, action="drive jobs of")
        return Scope(tenant=tenant)
    return Scope(tenant_pattern=pattern or guard.DEFAULT_PATTERN)


def _describe(scope: Scope) -> str:
    if scope.tenant:
        return f"tenant {scope.tenant}"
    if scope.tenant_pattern:
        return f"test tenants (/{scope.tenant_pattern}/)"
    return "every tenant"

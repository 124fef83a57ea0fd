"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path

import click

database_url = click.option(
    "--database-url", envvar="YE_DATABASE_URL", metavar="URL",
    help="External PostgreSQL: a URL (postgresql://user:pass@host:5432/db) or a libpq keyword DSN "
         "('host=... dbname=...'); env YE_DATABASE_URL. Passwords are masked in every output. "
         "Default: the embedded server (data in ~/.cache/ye-run/pg).")
ephemeral = click.option("--ephemeral", is_flag=True,
                         help="Embedded server in a temporary directory, removed afterwards.")
tenant_pattern = click.option(
    "--tenant-pattern", envvar="YE_TENANT_PATTERN", metavar="REGEX",
    help="Tenants ye-run may write to or delete (default: starts with ye_/qa_ or has the word 'test' in it; "
         "env YE_TENANT_PATTERN).")
force = click.option("--force", is_flag=True, help="Write to or delete a tenant that fails the tenant guard.")
pipeline_file = click.option(
    "--pipeline-file", envvar="YE_PIPELINE_FILE", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
    help="The pipeline definition: variant steps, job-level steps, retry rules, how the job row follows "
         "(docs/pipeline-definition.md; env YE_PIPELINE_FILE). Default: the built-in one, as deployed (for run, "
         "list and validate: the project config's first). A scenario that names its own (`pipeline_file:`), or "
         "whose folder has one in the project config, is read with that one.")


def selection(command):  # type: ignore[no-untyped-def]
    """--tag, --skip-tag, -k and --shard: which of the validated scenarios run (or are listed)."""
    for option in reversed([
        click.option("--tag", "tags", multiple=True, metavar="TAG",
                     help="Only scenarios with this tag (repeatable: any of them)."),
        click.option("--skip-tag", "skip_tags", multiple=True, metavar="TAG",
                     help="Leave out scenarios with this tag (repeatable)."),
        click.option("-k", "keyword", metavar="EXPR",
                     help="Only scenarios whose name matches: words as substrings, with and/or/not and "
                          "parentheses, e.g. -k 'retry and not overlay'."),
        click.option("--shard", metavar="K/N",
                     help="Run shard K of N (1-based): a deterministic, disjoint split for N CI machines. `run` "
                          "balances it by past durations (the run registry's, of runs before today UTC, or "
                          "--shard-durations), else by count; `list` splits by count."),
    ]):
        command = option(command)
    return command


variables = click.option(
    "--var", "variables", multiple=True, metavar="NAME=VALUE",
    help="A value for ${NAME} in scenario files (repeatable); overrides the environment.")


def history(command):  # type: ignore[no-untyped-def]
    """--last-failed, --last-failed-from, --reruns and --shard-durations: a run that learns from past runs."""
    for option in reversed([
        click.option("--last-failed", is_flag=True,
                     help="Run only the selected scenarios whose last run failed (failed, error or interrupted), "
                          "as the run registry recorded it; none: nothing runs."),
        click.option("--last-failed-from", metavar="REPORT.json", type=click.Path(dir_okay=False, path_type=Path),
                     help="As --last-failed, from a JSON report (e.g. last night's; also a file that failed to "
                          "load there)."),
        click.option("--reruns", type=click.IntRange(0, 10), default=0, show_default=True, metavar="N",
                     help="Run a failed scenario again, up to N times; one that then passes is reported as flaky "
                          "(exit 0), never as passed; each attempt is a run of its own."),
        click.option("--shard-durations", metavar="REPORT.json", type=click.Path(dir_okay=False, path_type=Path),
                     help="Balance --shard by the scenarios' durations in this JSON report (e.g. last night's "
                          "merged one) instead of the run registry's."),
    ]):
        command = option(command)
    return command

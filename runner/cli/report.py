"""`ye-run report`: render a saved JSON report (CI can keep only the JSON), or merge N shards' reports into one night.

`ye-run report RUN.json --html PATH` is short for `ye-run report render RUN.json --html PATH`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from runner.cli.common import EXIT_CODES_HELP, handle_errors


class _Group(click.Group):
    """`report FILE ...` (no command) means `report render FILE ...`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["render", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_Group)
def report() -> None:
    """Render a JSON report (`ye-run run --json`) as HTML, or merge shards' JSON reports into one night.

    \b
    Examples:
      ye-run report report.json --html report.html
      ye-run report merge shard-*.json --junit junit.xml --json night.json --html night.html
    """


@report.command()
@click.argument("report_path", metavar="REPORT", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--html", "html_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the HTML report.")
def render(report_path: Path, html_path: Path) -> None:
    """Render a JSON report as the self-contained HTML report."""
    handle_errors(_render)(report_path, html_path)


@report.command(epilog=EXIT_CODES_HELP)
@click.argument("reports", nargs=-1, required=True, metavar="SHARD.json...",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False, path_type=Path), help="Write JUnit XML.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the JSON report.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the HTML report.")
def merge(reports: tuple[Path, ...], junit_path: Path | None, json_path: Path | None,
          html_path: Path | None) -> None:
    """Merge the JSON reports of N CI machines (`run --shard K/N --json`) into one night's reports.

    The merged reports are those one machine running the whole selection writes. The exit code
    is the night's: the worst of the shards' (a flaky scenario passes). A scenario in two
    reports, a shard missing or given twice, and a selected scenario no report holds (kept as
    not run) are said on stderr and in the merged reports, and make it exit 2 (or a shard's
    worse code). The last line is the night's grand total. See docs/ci.md.
    """
    if not (junit_path or json_path or html_path):
        raise click.UsageError("name at least one report to write: --junit, --json or --html")
    sys.exit(handle_errors(_merge)(reports, junit_path, json_path, html_path))


def _render(report_path: Path, html_path: Path) -> None:
    from runner.report import html, reportfile

    html.write(html_path, reportfile.load(report_path))
    click.echo(f"wrote {html_path}")


def _merge(reports: tuple[Path, ...], junit_path: Path | None, json_path: Path | None,
           html_path: Path | None) -> int:
    from runner.report import html, json_report, junit, merge as merging, reportfile

    doc = merging.merge([(path, reportfile.load(path)) for path in reports])
    for path, write in ((json_path, json_report.write), (junit_path, junit.write_document),
                        (html_path, html.write)):
        if path is not None:
            write(path, doc)
            click.echo(f"wrote {path}")
    for problem in (doc["error"] or "").splitlines():
        click.echo(f"ye-run: {problem}", err=True)
    click.echo(merging.line(doc))
    return int(doc["exit_code"])

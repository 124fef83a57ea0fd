"""`ye-run report RUN.json --html PATH`: render a saved JSON report (CI can keep only the JSON)."""

from __future__ import annotations

from pathlib import Path

import click

from runner.cli.common import handle_errors


@click.command()
@click.argument("report", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--html", "html_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the HTML report.")
def report(report: Path, html_path: Path) -> None:
    """Render a JSON report (`ye-run run --json`) as the self-contained HTML report."""
    handle_errors(_report)(report, html_path)


def _report(report: Path, html_path: Path) -> None:
    from runner.report import html, reportfile

    html.write(html_path, reportfile.load(report))
    click.echo(f"wrote {html_path}")

"""`ye-run compare BASE.json NEW.json`: what changed since last night, and whether it is a regression."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from runner.cli.common import handle_errors
from runner.errors import ExitCode, InputError


@click.command()
@click.argument("base", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--max-slowdown", default="20%", show_default=True, metavar="PERCENT",
              help="A step slower (median) by more than this, and significantly so, is a regression.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.01, show_default=True,
              help="Significance level of the one-sided Mann-Whitney U test on the step's latencies.")
@click.option("--fail-on-regression", is_flag=True,
              help="Exit 1 when a step regressed or a scenario that passed now fails.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the comparison as a page: both runs' distributions side by side.")
def compare(base: Path, new: Path, max_slowdown: str, alpha: float, fail_on_regression: bool,
            html_path: Path | None) -> None:
    """Compare two JSON reports (e.g. last night's and tonight's): verdicts, and latency per scenario and step.

    For every scenario and step present in both: the number of samples, p50 and p95 before and
    after, the change of the median, the p-value of a one-sided Mann-Whitney U test (scipy) and
    its effect size (the probability that a new latency exceeds an old one; 0.5 is no change).
    Verdicts are matched by scenario name: newly failing, fixed, not run (no verdict tonight, so
    never fixed), new, removed. Exit 0, or 1 with --fail-on-regression when there is a
    regression; 2 for bad input (a file that is not a ye-run JSON report, a scenario name twice
    in one report).
    """
    code = handle_errors(_compare)(base, new, max_slowdown, alpha, fail_on_regression, html_path)
    sys.exit(code)


def _compare(base: Path, new: Path, max_slowdown: str, alpha: float, fail_on_regression: bool,
             html_path: Path | None) -> int:
    from runner.report import compare as comparing
    from runner.report import reportfile

    threshold = _percent(max_slowdown)
    result = comparing.compare(reportfile.load(base), reportfile.load(new), threshold, alpha, (str(base), str(new)))
    for line in comparing.render(result, threshold, alpha):
        click.echo(line)
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(comparing.render_html(result, str(base), str(new), threshold, alpha), encoding="utf-8")
    return ExitCode.FAILED if fail_on_regression and result.failed else ExitCode.PASSED


def _percent(text: str) -> float:
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*%?\s*", text)
    if match is None:
        raise InputError(f"--max-slowdown {text!r}: write a percentage, e.g. 20%")
    return float(match.group(1)) / 100

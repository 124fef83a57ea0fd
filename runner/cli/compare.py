"""`ye-run compare BASE.json NEW.json`: what changed since last night, and whether it is a regression."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from runner.cli.common import handle_errors
from runner.errors import ExitCode, InputError


@click.command()
@click.argument("reports", nargs=-1, required=True, metavar="BASE.json NEW.json | OLDEST.json ... NEWEST.json",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--max-slowdown", default="20%", show_default=True, metavar="PERCENT",
              help="A regression is slower at the median by more than this share (and than --min-delta), "
                   "significantly so.")
@click.option("--min-delta", default="10ms", show_default=True, metavar="DURATION",
              help="...and by more than this much time: a 1ms step that took 1.25ms (+25%) is noise.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.01, show_default=True,
              help="Significance level of the one-sided Mann-Whitney U test on the step's latencies.")
@click.option("--fail-on-regression", is_flag=True,
              help="Exit 1 when a step regressed or a scenario that passed now fails.")
@click.option("--regressions-only", is_flag=True,
              help="Show only the steps that regressed (the verdict lists and the last line stay).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the comparison as a page: both runs' distributions side by side, each trend.")
def compare(reports: tuple[Path, ...], max_slowdown: str, min_delta: str, alpha: float, fail_on_regression: bool,
            regressions_only: bool, html_path: Path | None) -> None:
    """Compare JSON reports (e.g. last night's and tonight's): verdicts, and latency per scenario and step.

    The last two reports are compared; given more (oldest first), each step's p50 in every one
    is shown as its trend. Verdicts are matched by scenario name and listed: newly failing,
    still failing, fixed, not run (no verdict tonight, so never fixed), new, removed. For every
    scenario and step in both: the samples, p50 and p95 before and after, the change of the
    median (share and time), the p-value of a one-sided Mann-Whitney U test (scipy) and its
    effect size (the probability that a new latency exceeds an old one; 0.5 is no change).
    Regressions come first. Exit 0, or 1 with --fail-on-regression when there is a regression
    or a newly failing scenario; 2 for bad input (a file that is not a ye-run JSON report, a
    scenario name twice in one report, fewer than two reports).
    """
    code = handle_errors(_compare)(list(reports), max_slowdown, min_delta, alpha, fail_on_regression,
                                   regressions_only, html_path)
    sys.exit(code)


def _compare(reports: list[Path], max_slowdown: str, min_delta: str, alpha: float, fail_on_regression: bool,
             regressions_only: bool, html_path: Path | None) -> int:
    from runner.report import compare as comparing
    from runner.report import compare_view, reportfile

    if len(reports) < 2:
        raise InputError("compare needs two reports at least (BASE.json NEW.json), or a series, oldest first")
    thresholds = comparing.Thresholds(alpha, _percent(max_slowdown), _duration(min_delta))
    sources = [str(path) for path in reports]
    result = comparing.history([reportfile.load(path) for path in reports], sources, thresholds)
    for line in compare_view.render(result, thresholds, regressions_only):
        click.echo(line)
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(compare_view.render_html(result, sources, thresholds, regressions_only),
                             encoding="utf-8")
    return ExitCode.FAILED if fail_on_regression and result.failed else ExitCode.PASSED


def _percent(text: str) -> float:
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*%?\s*", text)
    if match is None:
        raise InputError(f"--max-slowdown {text!r}: write a percentage, e.g. 20%")
    return float(match.group(1)) / 100


def _duration(text: str) -> float:
    from runner import durations

    problem = durations.problem(text)
    if problem is not None:
        raise InputError(f"--min-delta {text!r}: {problem}")
    return durations.parse(text)

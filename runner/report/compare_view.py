"""What `ye-run compare` shows: the verdict lists, then one row per scenario and step, regressions first, as console
lines (full names, never cut) and as a self-contained page (each table's distributions on one scale, trends)."""

from __future__ import annotations

from typing import Any

from runner.durations import format_seconds
from runner.report import charts
from runner.report.compare import Comparison, StepChange, Thresholds
from runner.report.table import Column, lines
from runner.stats import percentile

COLUMNS = (Column("scenario"), Column("step"), Column("n", right=True), Column("p50", right=True),
           Column("p95", right=True), Column("change", right=True), Column("Δp50", right=True), Column("p", right=True),
           Column("effect", right=True))


def render(result: Comparison, thresholds: Thresholds, regressions_only: bool = False) -> list[str]:
    """The console view; with `regressions_only`, the table holds only the regressions (the lists stay)."""
    out = []
    for title, names in result.verdicts:
        if names:
            out.append(f"{title} ({len(names)}):")
            out.extend(f"  {name}" for name in names)
    shown = _shown(result, regressions_only)
    if shown:
        trend = [Column("trend (p50)")] if result.trend else []
        out.extend(lines([*COLUMNS, *trend, Column("")], [_row(c, result) for c in shown]))
    out.append(summary(result, thresholds))
    return out


def summary(result: Comparison, thresholds: Thresholds) -> str:
    """The last line: how many regressions, by which rule, and the verdict counts."""
    return (f"{len(result.regressions)} regression(s) ({thresholds.describe()}); "
            f"{len(result.newly_failing)} newly failing, {len(result.still_failing)} still failing, "
            f"{len(result.fixed)} fixed, {len(result.not_run)} not run")


def _shown(result: Comparison, regressions_only: bool) -> list[StepChange]:
    return [c for c in result.steps if c.regression or not regressions_only]


def _seconds(values: tuple[float, ...], fraction: float) -> str:
    return "-" if not values else format_seconds(percentile(values, fraction))


def _cells(change: StepChange) -> dict[str, str]:
    """A row's figures, as both views print them."""
    delta = change.delta
    return {
        "n": f"{len(change.base)} → {len(change.new)}",
        "p50": f"{_seconds(change.base, 0.5)} → {_seconds(change.new, 0.5)}",
        "p95": f"{_seconds(change.base, 0.95)} → {_seconds(change.new, 0.95)}",
        "change": "-" if change.change is None else f"{change.change * 100:+.0f}%",
        "delta": "-" if delta is None else _signed(delta),
        "p": "-" if change.p_value is None else f"{change.p_value:.3g}",
        "effect": "-" if change.effect is None else f"{change.effect:.2f}",
    }


def _row(change: StepChange, result: Comparison) -> list[str]:
    cells = _cells(change)
    trend = [_trend_text(result.trend.get((change.scenario, change.step), ()))] if result.trend else []
    return [change.scenario, change.step, cells["n"], cells["p50"], cells["p95"], cells["change"], cells["delta"],
            cells["p"], cells["effect"], *trend, "REGRESSION" if change.regression else ""]


def _trend_text(values: tuple[float | None, ...]) -> str:
    return f"{charts.spark_text(values)} {_range(values)}" if _range(values) else "-"


def _range(values: tuple[float | None, ...]) -> str:
    """A trend's lowest and highest p50: a sparkline is drawn on its own scale, so this says how far it moved."""
    known = [v for v in values if v is not None]
    return f"{_fine(min(known))}–{_fine(max(known))}" if known else ""


def _signed(seconds: float) -> str:
    text = _fine(abs(seconds))
    return text if text in ("0.0ms", "0ms") else ("-" if seconds < 0 else "+") + text


def _fine(seconds: float) -> str:
    """A small difference with a tenth of a millisecond (a change of 0.4ms is not "0ms")."""
    return f"{seconds * 1000:.1f}ms" if seconds < 0.01 else format_seconds(seconds)


def render_html(result: Comparison, sources: list[str], thresholds: Thresholds, regressions_only: bool = False) -> str:
    """The comparison as a self-contained page: per scenario, a table whose distributions share one scale."""
    import jinja2

    environment = jinja2.Environment(loader=jinja2.PackageLoader("runner.report", "templates"), autoescape=True)
    return environment.get_template("compare.html.j2").render(
        regressions=result.regressions, failed=result.failed, sources=sources, rule=thresholds.describe(),
        tables=_tables(result, regressions_only), verdicts=result.verdicts, trend=bool(result.trend),
        summary=summary(result, thresholds))


def _tables(result: Comparison, regressions_only: bool) -> list[dict[str, Any]]:
    """One table per scenario, in the order of its first row (so a scenario with a regression comes first)."""
    by_scenario: dict[str, list[StepChange]] = {}
    for change in _shown(result, regressions_only):
        by_scenario.setdefault(change.scenario, []).append(change)
    tables = []
    for scenario, changes in by_scenario.items():
        scale = charts.span([c.base + c.new for c in changes])
        rows = [{**_cells(c), "step": c.step, "regression": c.regression,
                 "before": charts.histogram(c.base, span=scale), "after": charts.histogram(c.new, span=scale),
                 "trend": charts.sparkline(result.trend.get((scenario, c.step), ())),
                 "range": _range(result.trend.get((scenario, c.step), ()))} for c in changes]
        tables.append({"scenario": scenario, "axis": charts.axis(scale), "rows": rows,
                       "regressions": sum(c.regression for c in changes)})
    return tables


"""Night over night: two JSON reports compared, verdict by verdict and step latency by step latency.

A regression is a step that got slower by more than a threshold *and* significantly so: the
step's latencies of the two runs are compared with a one-sided Mann-Whitney U test (scipy; no
statistics written by hand), so noise alone rarely raises an alarm, and a real slowdown of a
step with enough samples rarely goes unseen. Latencies are taken from the traces themselves
(previous `done` to this step's `done`, on the database's clock), not from the summaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runner.errors import InputError
from runner.outcomes import Outcome
from runner.stats import median, percentile


@dataclass(frozen=True, slots=True)
class StepChange:
    scenario: str
    step: str
    base: tuple[float, ...]
    new: tuple[float, ...]
    p_value: float | None
    """One-sided: the new latencies are larger. None when a side has too few samples."""
    effect: float | None
    """Common-language effect size: the probability a new latency exceeds a base one (0.5: no change)."""

    @property
    def change(self) -> float | None:
        """The relative change of the median (the p50 every report shows); None when there is no base to divide."""
        if not self.base or not self.new or not median(self.base):
            return None
        return median(self.new) / median(self.base) - 1


@dataclass
class Comparison:
    newly_failing: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)
    """Scenarios the new report holds but did not run (--fail-fast, an interrupt): no verdict, so never fixed."""
    new: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    steps: list[StepChange] = field(default_factory=list)
    regressions: list[StepChange] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """What --fail-on-regression fails on: a slower step, or a scenario that stopped passing."""
        return bool(self.regressions or self.newly_failing)

    @property
    def verdicts(self) -> list[tuple[str, list[str]]]:
        """The verdict changes, titled, in the order every view lists them."""
        return [("newly failing", self.newly_failing), ("fixed", self.fixed), ("not run", self.not_run),
                ("new", self.new), ("removed", self.removed)]


def compare(base: dict[str, Any], new: dict[str, Any], max_slowdown: float = 0.2, alpha: float = 0.01,
            sources: tuple[str, str] = ("base report", "new report")) -> Comparison:
    """Verdict changes and step regressions of two reports, matched by scenario name (`sources` name the files)."""
    result = Comparison()
    before, after = by_name(base, sources[0]), by_name(new, sources[1])
    for name in sorted(set(before) | set(after)):
        _verdict(result, name, before.get(name), after.get(name))
    for name in sorted(set(before) & set(after)):
        old_samples, new_samples = samples(before[name]), samples(after[name])
        for step in [s for s in new_samples if s in old_samples]:
            change = _test(name, step, old_samples[step], new_samples[step])
            result.steps.append(change)
            if change.p_value is not None and change.p_value < alpha and (change.change or 0) > max_slowdown:
                result.regressions.append(change)
    return result


def by_name(doc: dict[str, Any], source: str) -> dict[str, dict[str, Any]]:
    """The report's scenarios by name; InputError when a name appears twice: two runs are never merged into one."""
    out: dict[str, dict[str, Any]] = {}
    first: dict[str, int] = {}
    for i, scenario in enumerate(doc["scenarios"]):
        name = scenario["name"]
        if name in out:
            raise InputError(f"{source}: $.scenarios[{i}].name: scenario {name!r} appears twice (also "
                             f"$.scenarios[{first[name]}]); compare matches scenarios by name and cannot tell "
                             f"them apart")
        out[name], first[name] = scenario, i
    return out


def _verdict(result: Comparison, name: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    if before is None:
        result.new.append(name)
    elif after is None:
        result.removed.append(name)
    elif _outcome(after) == Outcome.NOT_RUN:
        result.not_run.append(name)
    elif _failing(after) and not _failing(before):
        result.newly_failing.append(name)
    elif _failing(before) and _outcome(after).passing:
        result.fixed.append(name)


def _outcome(scenario: dict[str, Any]) -> Outcome:
    """A report's outcome, read as the enum it was written from (the report file was checked against its schema)."""
    return Outcome(scenario["outcome"])


def _failing(scenario: dict[str, Any]) -> bool:
    """Every outcome but passed, seeded and not run is failing (running too: it never finished)."""
    outcome = _outcome(scenario)
    return not outcome.passing and outcome != Outcome.NOT_RUN


def _test(scenario: str, step: str, base: list[float], new: list[float]) -> StepChange:
    if len(base) < 3 or len(new) < 3:
        return StepChange(scenario, step, tuple(base), tuple(new), None, None)
    from scipy.stats import mannwhitneyu

    test = mannwhitneyu(new, base, alternative="greater")
    return StepChange(scenario, step, tuple(base), tuple(new), float(test.pvalue),
                      float(test.statistic) / (len(new) * len(base)))


def samples(scenario: dict[str, Any]) -> dict[str, list[float]]:
    """Per step, the seconds from the previous `done` to its `done`, for every variant and job row of a run."""
    out: dict[str, list[float]] = {}
    for job in scenario["jobs"]:
        add_samples(out, job)
    return out


def add_samples(out: dict[str, list[float]], job: dict[str, Any]) -> None:
    """One job's part of `samples` (a long run's jobs are read one at a time)."""
    rows = [variant["trace"] for variant in job["variants"]] + [_after_variants(job)]
    for trace in rows:
        previous = None
        for t in trace:
            if t["status"] != "done":
                continue
            if previous is not None and t["step"] != previous["step"]:
                out.setdefault(t["step"], []).append(_seconds(previous, t))
            previous = t


def _after_variants(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The job row's trace from the last variant step on: its own (job-level) steps."""
    last = job["variants"][0]["trace"][-1]["step"] if job["variants"] and job["variants"][0]["trace"] else None
    trace = job["job_trace"]
    cut = next((i for i, t in enumerate(trace) if (t["step"], t["status"]) == (last, "done")), len(trace))
    return trace[cut:]


def _seconds(earlier: dict[str, Any], later: dict[str, Any]) -> float:
    if earlier["db_time"] and later["db_time"] and earlier["source"] != "seed":
        delta = datetime.fromisoformat(later["db_time"]) - datetime.fromisoformat(earlier["db_time"])
        return max(0.0, delta.total_seconds())
    return max(0.0, later["since_seed"] - earlier["since_seed"])


def render(result: Comparison, max_slowdown: float, alpha: float) -> list[str]:
    """The console table."""
    from runner.durations import format_seconds

    def seconds(value: float | None) -> str:
        return "-" if value is None else format_seconds(value)

    lines = []
    for title, names in result.verdicts:
        if names:
            lines.append(f"{title}: {', '.join(names)}")
    lines.append(f"{'scenario':24} {'step':18} {'n':>9} {'p50':>15} {'p95':>15} {'change':>8} {'p':>8} {'effect':>6}")
    for change in result.steps:
        flag = "  REGRESSION" if change in result.regressions else ""
        delta = "-" if change.change is None else f"{change.change * 100:+.0f}%"
        p = "-" if change.p_value is None else f"{change.p_value:.3g}"
        effect = "-" if change.effect is None else f"{change.effect:.2f}"
        lines.append(f"{change.scenario[:24]:24} {change.step[:18]:18} {len(change.base):>4}/{len(change.new):<4} "
                     f"{seconds(median(change.base)):>7}>{seconds(median(change.new)):<7} "
                     f"{seconds(percentile(change.base, 0.95)):>7}>{seconds(percentile(change.new, 0.95)):<7} "
                     f"{delta:>8} {p:>8} {effect:>6}{flag}")
    lines.append(f"{len(result.regressions)} regression(s) (slower by more than {max_slowdown * 100:.0f}% at "
                 f"p < {alpha}); {len(result.newly_failing)} newly failing, {len(result.fixed)} fixed, "
                 f"{len(result.not_run)} not run")
    return lines


def render_html(result: Comparison, base_name: str, new_name: str, max_slowdown: float, alpha: float) -> str:
    """The comparison as a self-contained page: both runs' distributions of each step side by side."""
    import jinja2

    from runner.durations import format_seconds
    from runner.report.charts import histogram

    def seconds(value: float | None) -> str:
        return "-" if value is None else format_seconds(value)

    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for change in result.steps:
        low = min(change.base + change.new) if change.base + change.new else 0.0
        high = max(change.base + change.new) if change.base + change.new else 1.0
        by_scenario.setdefault(change.scenario, []).append({
            "step": change.step, "n": f"{len(change.base)} → {len(change.new)}",
            "p50": f"{seconds(median(change.base))} → {seconds(median(change.new))}",
            "p95": f"{seconds(percentile(change.base, 0.95))} → {seconds(percentile(change.new, 0.95))}",
            "change": "-" if change.change is None else f"{change.change * 100:+.0f}%",
            "p": "-" if change.p_value is None else f"{change.p_value:.3g}",
            "effect": "-" if change.effect is None else f"{change.effect:.2f}",
            "before": histogram(list(change.base), span=(low, high)),
            "after": histogram(list(change.new), span=(low, high)),
            "regression": change in result.regressions})
    environment = jinja2.Environment(loader=jinja2.PackageLoader("runner.report", "templates"), autoescape=True)
    return environment.get_template("compare.html.j2").render(
        regressions=result.regressions, failed=result.failed, base_name=base_name, new_name=new_name,
        threshold=f"{max_slowdown * 100:.0f}%", alpha=alpha, steps=list(by_scenario.items()),
        verdicts=result.verdicts)

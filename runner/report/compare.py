"""Night over night: two JSON reports compared, verdict by verdict and step latency by step latency.

A regression is a step that got slower by more than two floors (a share of its median and an
amount of time) *and* significantly so: the step's latencies of the two runs are compared with a
one-sided Mann-Whitney U test (scipy; no statistics written by hand), so noise alone rarely
raises an alarm, and a real slowdown of a step with enough samples rarely goes unseen. Latencies are taken from the traces themselves
(previous `done` to this step's `done`, on the database's clock), not from the summaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from runner.durations import format_seconds
from runner.errors import InputError
from runner.outcomes import Outcome
from runner.stats import median


@dataclass(frozen=True, slots=True)
class Thresholds:
    """What makes a slower step a regression: significantly slower (p < alpha) *and* slower at the median by more
    than both floors, so a 1 ms step that took 1.25 ms (+25%, and significant over many samples) is noise."""

    alpha: float = 0.01
    slowdown: float = 0.2
    """The relative floor: the median's change (0.2 is 20%)."""
    delta: float = 0.010
    """The absolute floor, in seconds: how much longer the median must take."""

    def regressed(self, p_value: float | None, change: float | None, delta: float | None) -> bool:
        """Whether a step's change clears the test and both floors."""
        return (p_value is not None and p_value < self.alpha and (change or 0.0) > self.slowdown
                and (delta or 0.0) > self.delta)

    def describe(self) -> str:
        """The rule in words, as every view states it."""
        return (f"slower at the median by more than {self.slowdown * 100:.0f}% and {format_seconds(self.delta)}, "
                f"at p < {self.alpha:g}")


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
    regression: bool = False

    @property
    def change(self) -> float | None:
        """The relative change of the median (the p50 every report shows); None when there is no base to divide."""
        if not self.base or not self.new or not median(self.base):
            return None
        return median(self.new) / median(self.base) - 1

    @property
    def delta(self) -> float | None:
        """The change of the median in seconds; None when a side has no sample."""
        if not self.base or not self.new:
            return None
        return median(self.new) - median(self.base)


@dataclass
class Comparison:
    newly_failing: list[str] = field(default_factory=list)
    still_failing: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)
    """Scenarios the new report holds but did not run (--fail-fast, an interrupt): no verdict, so never fixed."""
    new: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    steps: list[StepChange] = field(default_factory=list)
    """Regressions first (the largest change first), then every other step in its scenario's order."""
    trend: dict[tuple[str, str], tuple[float | None, ...]] = field(default_factory=dict)
    """Over more than two reports: each (scenario, step) of the newest report's p50 in every report, oldest first
    (None where that report has no sample of it)."""

    @property
    def regressions(self) -> list[StepChange]:
        return [change for change in self.steps if change.regression]

    @property
    def failed(self) -> bool:
        """What --fail-on-regression fails on: a slower step, or a scenario that stopped passing."""
        return bool(self.regressions or self.newly_failing)

    @property
    def verdicts(self) -> list[tuple[str, list[str]]]:
        """The verdict changes, titled, in the order every view lists them."""
        return [("newly failing", self.newly_failing), ("still failing", self.still_failing), ("fixed", self.fixed),
                ("not run", self.not_run), ("new", self.new), ("removed", self.removed)]


def compare(base: dict[str, Any], new: dict[str, Any], thresholds: Thresholds = Thresholds(),
            sources: tuple[str, str] = ("base report", "new report")) -> Comparison:
    """Verdict changes and step regressions of two reports, matched by scenario name (`sources` name the files)."""
    result = Comparison()
    before, after = by_name(base, sources[0]), by_name(new, sources[1])
    for name in sorted(set(before) | set(after)):
        _verdict(result, name, before.get(name), after.get(name))
    for name in sorted(set(before) & set(after)):
        old_samples, new_samples = samples(before[name]), samples(after[name])
        for step in [s for s in new_samples if s in old_samples]:
            result.steps.append(_test(name, step, old_samples[step], new_samples[step], thresholds))
    result.steps.sort(key=lambda c: (not c.regression, -(c.change or 0.0) if c.regression else 0.0))
    return result


def history(docs: Sequence[dict[str, Any]], sources: Sequence[str], thresholds: Thresholds = Thresholds()
            ) -> Comparison:
    """The last two reports compared; given more, every compared step's p50 in each report as well (its trend)."""
    result = compare(docs[-2], docs[-1], thresholds, (sources[-2], sources[-1]))
    if len(docs) > 2:
        runs = [by_name(doc, source) for doc, source in zip(docs, sources)]
        wanted = {(c.scenario, c.step) for c in result.steps}
        p50s = [_p50s(run, wanted) for run in runs]
        result.trend = {(c.scenario, c.step): tuple(run.get((c.scenario, c.step)) for run in p50s)
                        for c in result.steps}
    return result


def _p50s(run: dict[str, dict[str, Any]], wanted: set[tuple[str, str]]) -> dict[tuple[str, str], float]:
    """One report's p50 of each wanted (scenario, step), from the traces as `compare` reads them."""
    out = {}
    for name in {scenario for scenario, _ in wanted} & set(run):
        for step, values in samples(run[name]).items():
            if (name, step) in wanted and values:
                out[(name, step)] = median(values)
    return out


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
    elif _failing(before) and _failing(after):
        result.still_failing.append(name)


def _outcome(scenario: dict[str, Any]) -> Outcome:
    """A report's outcome, read as the enum it was written from (the report file was checked against its schema)."""
    return Outcome(scenario["outcome"])


def _failing(scenario: dict[str, Any]) -> bool:
    """Every outcome but passed, seeded and not run is failing (running too: it never finished)."""
    outcome = _outcome(scenario)
    return not outcome.passing and outcome != Outcome.NOT_RUN


def _test(scenario: str, step: str, base: list[float], new: list[float], thresholds: Thresholds) -> StepChange:
    if len(base) < 3 or len(new) < 3:
        return StepChange(scenario, step, tuple(base), tuple(new), None, None)
    from scipy.stats import mannwhitneyu

    test = mannwhitneyu(new, base, alternative="greater")
    change = StepChange(scenario, step, tuple(base), tuple(new), float(test.pvalue),
                        float(test.statistic) / (len(new) * len(base)))
    return replace(change, regression=thresholds.regressed(change.p_value, change.change, change.delta))


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

"""A scenario's closing lines (outcome, counts, observation, latency, cleanup), shared by every reporter."""

from __future__ import annotations

from runner.durations import format_seconds
from runner.engine.results import ScenarioResult


def summary(result: ScenarioResult) -> list[str]:
    """The scenario's closing lines: outcome, counts, observation, latency table."""
    jobs = result.jobs
    passed = sum(j.outcome == "passed" for j in jobs)
    failed = sum(j.outcome == "failed" for j in jobs)
    unfinished = sum(j.outcome in ("interrupted", "running") for j in jobs)
    variants = sum(len(j.seeded.variants) for j in jobs)
    head = (f"{result.name}: {result.outcome.upper()} - {len(jobs)} job(s): {passed} passed, {failed} failed"
            + (f", {unfinished} unfinished" if unfinished else "")
            + f"; {variants} variants; {format_seconds(result.duration)}")
    lines = [head]
    if result.error:
        lines.append(f"  error: {result.error}")
    if result.observation is not None:
        obs = result.observation
        extra = f"; {obs.reconnects} reconnect(s)" if obs.reconnects else ""
        lines.append(f"  observed: {obs.description}{extra}")
    retries: dict[str, int] = {}
    for job in jobs:
        for counts in job.retries.values():
            for step, n in counts.items():
                retries[step] = retries.get(step, 0) + n
    if retries:
        lines.append("  retries seen: " + ", ".join(f"{step} {n}" for step, n in retries.items()))
    if result.latency:
        lines.append(f"  {'step':18}{'n':>5}{'p50':>10}{'p95':>10}{'max':>10}")
        for step, lat in result.latency.items():
            lines.append(f"  {step:18}{lat.n:>5}{format_seconds(lat.p50):>10}{format_seconds(lat.p95):>10}"
                         f"{format_seconds(lat.max):>10}")
    if result.cleanup is not None:
        history = result.cleanup.counts.get("ye_run_history", 0)
        seeded = result.cleanup.total - history
        lines.append(f"  cleanup ({result.cleanup_policy}): deleted {seeded} seeded and dependent row(s)"
                     + (f" and {history} ye-run history row(s)" if history else ""))
    elif result.record is not None and result.record.jobs and result.outcome != "seeded":
        lines.append(f"  rows kept (cleanup: {result.cleanup_policy}); remove them with: "
                     f"ye-run cleanup --run {result.run_id}")
    return lines

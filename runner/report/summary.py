"""A scenario's closing lines (outcome, counts, observation, latency, cleanup), shared by every reporter."""

from __future__ import annotations

from runner.durations import format_seconds
from runner.engine.results import ScenarioResult
from runner.outcomes import Outcome


def summary(result: ScenarioResult) -> list[str]:
    """The scenario's closing lines: its verdict, then what its cleanup did."""
    return verdict(result) + cleanup_lines(result)


def verdict(result: ScenarioResult) -> list[str]:
    """Outcome, counts, observation, latency table: what the console prints as soon as the jobs are judged."""
    tally = result.jobs.tally()
    passed, failed = tally.outcomes[Outcome.PASSED], tally.outcomes[Outcome.FAILED]
    unfinished = tally.outcomes[Outcome.INTERRUPTED] + tally.outcomes[Outcome.RUNNING]
    head = (f"{result.name}: {result.outcome.upper()} - {len(result.jobs)} job(s): {passed} passed, {failed} failed"
            + (f", {unfinished} unfinished" if unfinished else "")
            + f"; {tally.variants} variants; {format_seconds(result.duration)}")
    lines = [head]
    if result.error:
        lines.append(f"  error: {result.error}")
    if result.observation is not None:
        obs = result.observation
        extra = f"; {obs.reconnects} reconnect(s)" if obs.reconnects else ""
        lines.append(f"  observed: {obs.description}{extra}")
    if tally.retries:
        lines.append("  retries seen: " + ", ".join(f"{step} {n}" for step, n in tally.retries.items()))
    if result.latency:
        lines.append(f"  {'step':18}{'n':>5}{'p50':>10}{'p95':>10}{'max':>10}")
        for step, lat in result.latency.items():
            lines.append(f"  {step:18}{lat.n:>5}{format_seconds(lat.p50):>10}{format_seconds(lat.p95):>10}"
                         f"{format_seconds(lat.max):>10}")
    return lines


def cleanup_lines(result: ScenarioResult) -> list[str]:
    """What the cleanup policy did, after the verdict: deleted, kept as pending, failed, or kept by policy."""
    policy = result.cleanup_policy
    if result.cleanup is not None:
        history = result.cleanup.counts.get("ye_run_history", 0)
        seeded = result.cleanup.total - history
        return [f"  cleanup ({policy}): deleted {seeded} seeded and dependent row(s)"
                + (f" and {history} ye-run history row(s)" if history else "")] + \
            [f"  cleanup: {note}" for note in result.cleanup.notes]
    if result.cleanup_error:
        return [f"  {result.cleanup_error}"]
    if result.cleanup_pending is not None:
        return [f"  cleanup ({policy}): the pipeline may still be working on {result.cleanup_pending_rows} row(s) "
                f"until {result.cleanup_pending.astimezone():%H:%M:%S} (its steps' limits); the rows are kept as "
                f"pending: ye-run cleanup --pending removes them after that"]
    if result.record is not None and result.record.jobs and result.outcome != Outcome.SEEDED:
        return [f"  rows kept (cleanup: {policy}); remove them with: ye-run cleanup --run {result.run_id}"]
    return []

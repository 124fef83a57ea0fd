"""A scenario's closing lines (outcome, counts, observation, latency, cleanup), shared by every reporter."""

from __future__ import annotations

from runner.durations import format_seconds
from runner.engine.results import ScenarioResult, StepLatency
from runner.outcomes import Outcome


def summary(result: ScenarioResult) -> list[str]:
    """The scenario's closing lines: its verdict, then what its cleanup did."""
    return verdict(result) + cleanup_lines(result)


def verdict(result: ScenarioResult) -> list[str]:
    """Outcome, counts, observation, latency table: what the console prints as soon as the jobs are judged."""
    return heading(result) + details(result)


def heading(result: ScenarioResult) -> list[str]:
    """The verdict's line; when it did not pass, what the scenario is about and its earlier attempts; for a file that
    failed to load, its located problems. What a console shows even with -q when the verdict is bad."""
    if result.invalid:
        return [f"{result.name}: ERROR - the file failed to load (none of its scenarios ran)"] + \
            [f"  {line}" for line in (result.error or "").splitlines()]
    tally = result.jobs.tally()
    passed, failed = tally.outcomes[Outcome.PASSED], tally.outcomes[Outcome.FAILED]
    unfinished = tally.outcomes[Outcome.INTERRUPTED] + tally.outcomes[Outcome.RUNNING]
    head = (f"{result.name}: {result.outcome.upper()} - {len(result.jobs)} job(s): {passed} passed, {failed} failed"
            + (f", {unfinished} unfinished" if unfinished else "")
            + f"; {tally.variants} variants; {format_seconds(result.duration)}")
    about = [f"  description: {result.description}"] if result.description and failing(result) else []
    return [head] + about + attempt_lines(result)


def details(result: ScenarioResult) -> list[str]:
    """The error, how it was observed, retries seen and the latency table."""
    if result.invalid:
        return []
    tally = result.jobs.tally()
    lines = []
    if result.error:
        lines.append(f"  error: {result.error}")
    if result.observation is not None:
        obs = result.observation
        extra = f"; {obs.reconnects} reconnect(s)" if obs.reconnects else ""
        lines.append(f"  observed: {obs.description}{extra}")
    if tally.retries:
        lines.append("  retries seen: " + ", ".join(f"{step} {n}" for step, n in tally.retries.items()))
    return lines + latency_table(result)


JOBS_ROW = "jobs end to end"
"""The latency table's last row: each job from seeding to its last write (`expect.job_latency`)."""


def latency_table(result: ScenarioResult) -> list[str]:
    """Per step n, p50, p95, p99 and max, then the jobs end to end; each with the limits it was held to, so a
    limit that held is seen to be checked."""
    rows = [(step, lat, result.plan.get("latency_limits", {}).get(step, {})) for step, lat in result.latency.items()]
    if result.job_latency is not None:
        rows.append((JOBS_ROW, result.job_latency, result.plan.get("job_latency_limits", {})))
    if not rows:
        return []
    width = max(18, *(len(name) + 1 for name, _, _ in rows))
    limited = any(limits for _, _, limits in rows)
    head = f"  {'step':{width}}{'n':>5}{'p50':>10}{'p95':>10}{'p99':>10}{'max':>10}" + ("  limit" if limited else "")
    return [head] + [f"  {name:{width}}{lat.n:>5}" + "".join(f"{format_seconds(value):>10}" for value in (
        lat.p50, lat.p95, lat.p99, lat.max)) + _limits(lat, limits) for name, lat, limits in rows]


def _limits(lat: StepLatency, limits: dict[str, float]) -> str:
    """`  p95 <= 100ms ok, max <= 1s OVER`: each limit and whether it held."""
    cells = [f"{level} <= {format_seconds(limit)} {'OVER' if getattr(lat, level) > limit else 'ok'}"
             for level, limit in limits.items()]
    return "  " + ", ".join(cells) if cells else ""


def failing(result: ScenarioResult) -> bool:
    """Whether the verdict is one a reader acts on: failed, error, interrupted, or flaky."""
    return result.outcome in (Outcome.FAILED, Outcome.ERROR, Outcome.INTERRUPTED, Outcome.FLAKY)


def attempt_lines(result: ScenarioResult) -> list[str]:
    """The earlier attempts of a scenario run again (--reruns), each with what failed first."""
    total = len(result.attempts) + 1
    return [f"  attempt {number} of {total} (run {attempt.run_id}): {attempt.outcome}"
            + (f" - {attempt.failures[0]}" if attempt.failures else "")
            for number, attempt in enumerate(result.attempts, 1)]


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

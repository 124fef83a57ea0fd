"""`--junit`, `--json`, `--html`: the watch's reports, written when it ends, whatever ended it.

A watch is rendered as a run of one scenario, `watch`, in the JSON report's format
(`schemas/report.schema.json`), so the run's writers make the three files (`report.junit`,
`report.json_report`, `report.html`) and `ye-run report` reads them back. Each judged job listed is
a job of that scenario, a JUnit testcase: a violated job fails, with each violation (message, what
it broke, the expected-vs-observed diff); a job that failed within the contract passes, its failure
kept as *detected* (`unexpected_failure`, as the contract's scenario declares it) and its job row's
last state shown; a completed job passes. The scenario's outcome is `failed` on a violation, `error`
when the watch ended on an error (a lost database), else `passed`.

A watch judges jobs for days, so the report holds a bounded number: the first `LISTED` violated
jobs (where a problem starts), the latest `LISTED` completed and the latest `LISTED` failed ones;
the rest are counted (the total and its violations by kind count every job). Numbers of jobs are
the watch's (`job N` is the N-th job it followed, as in its messages); missing numbers are the jobs
not listed. Step latencies are each step's running-to-done times (database clock), percentiles from
a uniform sample (`latency.Reservoir`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import __version__
from runner.definition import Definition
from runner.errors import ExitCode, InputError
from runner.outcomes import FailureKind
from runner.report import json_report, junit
from runner.trace import Failure
from runner.watch.judge import JobVerdict
from runner.watch.latency import Reservoir, seconds_between
from runner.watch.output import Totals
from runner.watch.source import HistorySource, Write

if TYPE_CHECKING:
    from runner.watch.loop import Watch

LISTED = 10_000
"""Jobs a report lists per outcome at most (violated: the first ones; completed, failed: the latest)."""
NAME = "watch"


@dataclass(frozen=True)
class ReportPaths:
    junit: Path | None = None
    json: Path | None = None
    html: Path | None = None

    def __bool__(self) -> bool:
        return any((self.junit, self.json, self.html))


@dataclass(frozen=True)
class Setup:
    """What the watch was asked: the report's plan, the database it watched."""

    database: str
    definition: Definition
    window: str
    tenants: tuple[str, ...] = ()
    max_retries: int = 2
    settle: float = 10.0


class WatchReport:
    """A sink of verdicts and a listener of step latencies; `document` is the report, `save` writes it."""

    def __init__(self, setup: Setup, listed: int = LISTED):
        self.setup = setup
        self.listed = listed
        self.started = datetime.now(timezone.utc)
        self.violated: list[tuple[int, JobVerdict]] = []
        """(ordinal, verdict): the verdicts themselves, rendered only when the report is written (half the memory of a
        rendered job)."""
        self.completed: deque[tuple[int, JobVerdict]] = deque(maxlen=listed)
        self.failed: deque[tuple[int, JobVerdict]] = deque(maxlen=listed)
        self.seen = {"completed": 0, "failed": 0, "violated": 0}
        self.latency: dict[str, Reservoir] = {}
        self.job_latency = Reservoir()
        self.variants: tuple[int, int] | None = None
        self._ordinals: dict[str, int] = {}
        self._next = 0
        self._watch: Watch | None = None

    # --- fed by the watch ---------------------------------------------------------------

    def attach(self, watch: Watch) -> None:
        """Hear `watch`'s verdicts, and number its jobs as it does (call before it runs)."""
        watch.sinks.append(self.verdict)
        self._watch = watch
        judge = watch.judge

        def number(writes: list[Write]) -> None:
            for write in writes:
                if write.job_id not in self._ordinals:
                    state = judge.tracker.jobs.get(write.job_id)
                    if state is not None:
                        self._ordinals[write.job_id] = state.result.ordinal

        watch.readers.append(number)

    def step_latency(self, step: str, seconds: float) -> None:
        self.latency.setdefault(step, Reservoir()).add(seconds)

    def verdict(self, verdict: JobVerdict) -> None:
        if verdict.after_end is not None:  # judged again: it replaces the job's earlier verdict
            self.seen[verdict.after_end] -= 1
            listed = self.failed if verdict.after_end == "failed" else self.completed
            earlier = next((entry for entry in listed if entry[1].job_id == verdict.job_id), None)
            if earlier is not None:
                listed.remove(earlier)
                self._ordinals[verdict.job_id] = earlier[0]
        self._next += 1
        ordinal = self._ordinals.pop(verdict.job_id, None) or self._next
        self.seen[verdict.outcome] += 1
        low, high = self.variants or (verdict.variants, verdict.variants)
        self.variants = (min(low, verdict.variants), max(high, verdict.variants))
        spent = seconds_between(verdict.first_write, verdict.last_write)
        if verdict.outcome == "completed" and spent is not None:
            self.job_latency.add(spent)
        if verdict.outcome == "violated":
            if len(self.violated) < self.listed:
                self.violated.append((ordinal, verdict))
        else:
            (self.failed if verdict.outcome == "failed" else self.completed).append((ordinal, verdict))

    # --- the report ---------------------------------------------------------------------

    def document(self, totals: Totals, error: BaseException | None = None) -> dict[str, Any]:
        """The JSON report's document: one scenario, `watch`, its jobs those listed."""
        finished = datetime.now(timezone.utc)
        message = _error_text(error)
        code = _exit_code(error) if error is not None else ExitCode.FAILED if totals.violations else ExitCode.PASSED
        outcome = "error" if error is not None else "failed" if totals.violations else "passed"
        jobs = [_job(verdict, ordinal) for ordinal, verdict in
                sorted([*self.violated, *self.failed, *self.completed], key=lambda listed: listed[0])]
        setup, definition = self.setup, self.setup.definition
        low, high = self.variants or (0, 0)
        scenario = {
            "name": NAME, "file": definition.source, "outcome": outcome, "error": message,
            "note": self._note(len(jobs)),
            "run": {"run_id": f"watch-{self.started.strftime('%Y%m%dT%H%M%S')}", "record": None},
            "database": {"url": setup.database, "embedded": False},
            "started_at": self.started.isoformat(), "finished_at": finished.isoformat(),
            "duration": round((finished - self.started).total_seconds(), 6),
            "plan": {"mode": NAME, "jobs": totals.judged, "variants": f"{low}" if low == high else f"{low}-{high}",
                     "start": definition.variant_names[0] if definition.variant_names else "",
                     "tags": [], "expected_steps": list(definition.variant_names[1:]),
                     "expected_job_steps": list(definition.job_names), "window": setup.window,
                     "tenants": list(setup.tenants), "max_retries": setup.max_retries, "settle": setup.settle,
                     "definition": {"name": definition.name, "source": definition.source,
                                    "sha256": definition.sha256}},
            "observation": self._observation(totals),
            "jobs": jobs, "failures": [],
            "latency": {step: r.summary() for step, r in self._steps() if r.n},
            "job_latency": self.job_latency.summary() if self.job_latency.n else None,
            "cleanup": {"policy": "never", "applied": False, "counts": {}, "notes": [], "error": None,
                        "pending_until": None},
            "pipeline_restarts": 0, "delayed_creations": 0, "statements": totals.queries,
            "summary": totals.lines() + self._failed_notes(),
        }
        return {
            "format": json_report.FORMAT_VERSION, "error": message, "ye_run_version": __version__,
            "started_at": self.started.isoformat(), "finished_at": finished.isoformat(), "exit_code": code,
            "totals": {"scenarios": 1, "passed": int(outcome == "passed"), "failed": int(outcome == "failed"),
                       "errors": int(outcome == "error"), "interrupted": 0, "not_run": 0, "cleanup_failed": 0},
            "scenarios": [scenario],
        }

    def save(self, paths: ReportPaths, totals: Totals, error: BaseException | None = None) -> list[Path]:
        """Write each report asked for; InputError naming the file that could not be written."""
        if not paths:
            return []
        from runner.report import html

        doc = self.document(totals, error)
        written = []
        for path, write in ((paths.json, json_report.write), (paths.junit, junit.write_document),
                            (paths.html, html.write)):
            if path is None:
                continue
            try:
                write(path, doc)
            except OSError as exc:
                raise InputError(f"cannot write the report {path}: {exc.strerror or exc}") from None
            written.append(path)
        return written

    def _observation(self, totals: Totals) -> dict[str, Any]:
        """How the watch read: the history table (every write), or LISTEN and reconciling reads (not complete)."""
        source = self._watch.source if self._watch is not None else None
        history = source is None or isinstance(source, HistorySource)
        description = "every write from ye-run's history table (ye_run_history), in order" if history else \
            str(getattr(source, "description", "LISTEN + reconciling reads"))
        return {"method": "history" if history else "listen", "complete": history and not totals.gave_up,
                "description": description, "reconnects": totals.reconnects, "notifications": 0,
                "queries": totals.queries, "notes": list(totals.notes)}

    def _steps(self) -> Iterable[tuple[str, Reservoir]]:
        order = {name: i for i, name in enumerate(self.setup.definition.names)}
        return sorted(self.latency.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))

    def _note(self, listed: int) -> str:
        judged = sum(self.seen.values())
        if listed == judged:
            return f"every judged job is listed ({judged})"
        return (f"{listed} of {judged} judged job(s) listed: the first {self.listed:,} violated, the latest "
                f"{self.listed:,} completed and failed; the others are counted in the total")

    def _failed_notes(self) -> list[str]:
        out = []
        for ordinal, verdict in sorted(self.failed, key=lambda listed: listed[0]):
            end = verdict.end_state
            where = f", the job row at ({end[0]}, {end[1]})" if end else ""
            out.append(f"job {ordinal} ({verdict.job_id}): failed within the contract{where} (a pass: the contract "
                       "allows it)")
        return out


def _job(verdict: JobVerdict, ordinal: int) -> dict[str, Any]:
    """A judged job in the report's job format (its writes are not kept: the violations carry the diff)."""
    end = verdict.end_state
    detected = []
    if verdict.outcome == "failed":
        where = f" at ({end[0]}, {end[1]})" if end else ""
        detected.append(_failure(Failure(FailureKind.UNEXPECTED_FAILURE, f"{NAME} › job {ordinal} ({verdict.job_id}): "
                                         f"failed within the contract{where}", job_id=verdict.job_id,
                                         step=end[0] if end else None), ordinal))
    return {
        "ordinal": ordinal, "job_id": verdict.job_id, "tenant_id": verdict.tenant_id or "", "asset_id": "",
        "outcome": "failed" if verdict.violated else "passed",
        "seeded_at": _time(verdict.first_write), "finished_at": _time(verdict.last_write),
        "duration": seconds_between(verdict.first_write, verdict.last_write),
        "final_state": {"step": end[0], "status": end[1]} if end else None,
        "job_trace": [], "variants": [], "job_retries": verdict.retries.get(0, {}),
        "failures": [_failure(f, ordinal, verdict.broke[i] if i < len(verdict.broke) else "")
                     for i, f in enumerate(verdict.violations)],
        "detected": detected,
    }


def _failure(f: Failure, ordinal: int, broke: str = "") -> dict[str, Any]:
    return {"kind": str(f.kind), "message": f.message + (f" (broke {broke})" if broke else ""), "detail": f.detail,
            "job_ordinal": ordinal, "job_id": f.job_id, "creation_order": f.creation_order,
            "variant_id": f.variant_id, "step": f.step, "spent": f.spent, "limit": f.limit, "origin": None,
            "at": None}


def _time(stamp: datetime | None) -> str | None:
    return None if stamp is None else stamp.isoformat()


def _error_text(error: BaseException | None) -> str | None:
    if error is None:
        return None
    text = str(error).strip() or type(error).__name__
    return f"the watch ended on an error: {text}"


def _exit_code(error: BaseException) -> int:
    return int(getattr(error, "exit_code", ExitCode.BUG))

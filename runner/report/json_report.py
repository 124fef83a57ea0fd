"""The JSON report: everything a run knows (plan, seeded ids, full traces with both clocks,
how it observed, every assertion). Its format is `schemas/report.schema.json`."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from runner import __version__
from runner.db.registry import RunRecord
from runner.engine.narrow import Shard
from runner.engine.results import JobResult, ScenarioResult, StepLatency
from runner.report.filereporter import FileReporter
from runner.report.summary import summary
from runner.trace import Failure, Transition

FORMAT_VERSION = 1


class Lazy:
    """A list the writer renders item by item: a long run's jobs are never all in memory as JSON at once.
    It can be read once (the HTML page reads its jobs this way too)."""

    def __init__(self, items: Iterable[Any]):
        self.items = items

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)


def document(results: list[ScenarioResult], exit_code: int, started: datetime, finished: datetime,
             error: str | None = None, lazy: bool = False, shard: Shard | None = None) -> dict:
    """The report as a dict; with `lazy`, each scenario's jobs (and the record's keys) are `Lazy`: read once."""
    doc = {
        "format": FORMAT_VERSION,
        "error": error,
        "ye_run_version": __version__,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "exit_code": exit_code,
        "scenarios": [_scenario(r, lazy) for r in results],
    }
    if shard is not None:
        doc["shard"] = {"index": shard.index, "count": shard.count, "balanced_by": shard.balanced_by,
                        "selection": list(shard.selection)}
    return doc


class JsonReporter(FileReporter):
    """Writes the document when the session finishes, whatever ended it."""

    def save(self, outcome) -> None:  # type: ignore[no-untyped-def]
        write(self.path, session_document(outcome, lazy=True, error=self.error(outcome)))


def session_document(outcome, lazy: bool = False, error: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    """The whole session's document, totals included: what the JSON report and the HTML page both say. `error`:
    what stopped the session, as a reporter heard it (a refused suite), else the outcome's error."""
    if error is None and outcome.error is not None:
        error = str(outcome.error)
    doc = document(outcome.results, outcome.exit_code, outcome.started, outcome.finished, error, lazy=lazy,
                   shard=outcome.shard)
    doc["totals"] = dataclasses.asdict(outcome.totals)
    return doc


def write(path: Path, doc: dict) -> None:
    """The same text as `json.dumps(doc, indent=2)`, written as it is made, so peak memory is one job's JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        _emit(out, doc, 0)
        out.write("\n")


def _emit(out: IO[str], value: Any, level: int) -> None:
    inner = "\n" + "  " * (level + 1)
    if isinstance(value, Lazy):
        items: Iterable[Any] = value.items
    elif isinstance(value, (dict, list)) and _has_lazy(value):
        items = value.items() if isinstance(value, dict) else value
    else:
        out.write(json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n" + "  " * level))
        return
    opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
    out.write(opening)
    empty = True
    for item in items:
        out.write(("," if not empty else "") + inner)
        empty = False
        if isinstance(value, dict):
            key, item = item
            out.write(json.dumps(key, ensure_ascii=False) + ": ")
        _emit(out, item, level + 1)
    out.write(closing if empty else "\n" + "  " * level + closing)


def _has_lazy(value: Any) -> bool:
    if isinstance(value, Lazy):
        return True
    if isinstance(value, dict):
        return any(_has_lazy(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_lazy(v) for v in value)
    return False


def _scenario(result: ScenarioResult, lazy: bool = False) -> dict[str, Any]:
    jobs = (_job(job) for job in result.jobs)
    observation = result.observation
    return {
        "name": result.name,
        "file": result.path,
        "description": result.description,
        "invalid": result.invalid,
        "outcome": result.outcome,
        "error": result.error,
        "note": result.note or None,
        "attempts": [{"run_id": a.run_id, "outcome": a.outcome, "duration": a.duration, "failures": list(a.failures)}
                     for a in result.attempts],
        "worker": result.worker,
        "run": {"run_id": result.run_id, "record": _record(result.record, lazy)},
        "database": {"url": result.database, "embedded": result.embedded},
        "started_at": _time(result.started_at),
        "finished_at": _time(result.finished_at),
        "duration": round(result.duration, 6),
        "plan": result.plan,
        "observation": None if observation is None else {
            "method": observation.method, "complete": observation.complete,
            "description": observation.description, "reconnects": observation.reconnects,
            "notifications": observation.notifications, "queries": observation.queries, "notes": observation.notes},
        "jobs": Lazy(jobs) if lazy else list(jobs),
        "failures": [_failure(f) for f in result.failures],
        "latency": {step: _latency(s) for step, s in result.latency.items()},
        "job_latency": _latency(result.job_latency) if result.job_latency is not None else None,
        "cleanup": {"policy": result.cleanup_policy, "applied": result.cleanup is not None,
                    "counts": result.cleanup.counts if result.cleanup else {},
                    "notes": result.cleanup.notes if result.cleanup else [], "error": result.cleanup_error,
                    "pending_until": _time(result.cleanup_pending)},
        "pipeline_restarts": result.pipeline_restarts,
        "delayed_creations": result.delayed_creations,
        "statements": result.statements,
        "summary": summary(result),
    }


def _latency(s: StepLatency) -> dict[str, float]:
    return {"n": s.n, "p50": s.p50, "p95": s.p95, "p99": s.p99, "max": s.max}


def _record(record: RunRecord | None, lazy: bool) -> dict[str, Any] | None:
    if record is None:
        return None
    return record.json_with(lambda keys: Lazy(list(k) for k in keys) if lazy else [list(k) for k in keys])


def _job(job: JobResult) -> dict[str, Any]:
    return {
        "ordinal": job.ordinal,
        "job_id": job.job_id,
        "tenant_id": job.seeded.tenant_id,
        "asset_id": job.seeded.asset_id,
        "outcome": job.outcome,
        "seeded_at": _time(job.seeded_at),
        "finished_at": _time(job.finished_at),
        "duration": None if job.duration is None else round(job.duration, 6),
        "final_state": None if job.final_state is None else {"step": job.final_state[0], "status": job.final_state[1]},
        "job_trace": [_transition(t, job) for t in job.job_trace],
        "variants": [{"creation_order": trace.creation_order, "variant_id": trace.variant_id,
                      "retries": job.retries.get(trace.creation_order, {}),
                      "trace": [_transition(t, job) for t in trace.transitions]}
                     for trace in sorted(job.variants.values(), key=lambda v: v.creation_order)],
        "job_retries": job.retries.get(0, {}),
        "failures": [_failure(f, job.seeded_mono) for f in job.failures],
        "detected": [_failure(f, job.seeded_mono) for f in job.detected],
    }


def _transition(t: Transition, job: JobResult) -> dict[str, Any]:
    return {"step": t.step, "status": t.status, "retry_count": t.retry_count, "db_time": _time(t.db_time),
            "seen_time": _time(t.seen_time), "since_seed": round(t.seen_mono - job.seeded_mono, 6), "source": t.source}


def _failure(f: Failure, seeded_mono: float | None = None) -> dict[str, Any]:
    """A failure; of a job's (`seeded_mono` given), `at` is when the write that broke the rule was seen."""
    origin = None if f.origin is None else {"file": f.origin.file, "line": f.origin.line, "col": f.origin.col,
                                            "path": f.expectation or "$"}
    at = None if seeded_mono is None or f.seen_mono is None else round(max(0.0, f.seen_mono - seeded_mono), 6)
    return {"kind": f.kind, "message": f.message, "detail": f.detail, "job_ordinal": f.job_ordinal,
            "job_id": f.job_id, "creation_order": f.creation_order, "variant_id": f.variant_id, "step": f.step,
            "spent": f.spent, "limit": f.limit, "origin": origin, "at": at}


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()

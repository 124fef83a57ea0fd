"""The HTML report: one self-contained file, rendered from the (schema-valid) JSON report with Jinja2.

Inline CSS, JS and SVG only, and a Content-Security-Policy that forbids every request, so it
opens from disk or a CI artifact viewer. Failures come first: a list of them at the top, then
the scenarios worst first. Failed jobs are open with their timelines (a mark where each failure
was seen); passed jobs are collapsed and drawn on demand, from compact data embedded in the
page, so a run of thousands of jobs stays small and quick to open.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from runner.durations import format_seconds
from runner.engine.results import Totals
from runner.outcomes import Outcome
from runner.report import charts, compare, failurelist
from runner.report.filereporter import FileReporter

STATUSES = ("queued", "running", "done", "failed")
MARKS = {Outcome.PASSED: "✓", Outcome.SEEDED: "✓", Outcome.FAILED: "✗", Outcome.ERROR: "!",
         Outcome.INTERRUPTED: "■", Outcome.NOT_RUN: "–", Outcome.RUNNING: "…", Outcome.FLAKY: "≈"}

LISTED = 200
"""The failure list at the top of the page stops here (a soak's thousands of failures are all below, by job)."""


class HtmlReporter(FileReporter):
    """Writes the page when the session finishes, from the same document as the JSON report."""

    def save(self, outcome) -> None:  # type: ignore[no-untyped-def]
        from runner.report import json_report

        write(self.path, json_report.session_document(outcome, lazy=True, error=self.error(outcome)))


def write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(doc), encoding="utf-8")


def render(doc: dict[str, Any]) -> str:
    """The page for a JSON report document."""
    import jinja2

    environment = jinja2.Environment(loader=jinja2.PackageLoader("runner.report", "templates"),
                                     autoescape=True, trim_blocks=True, lstrip_blocks=True)
    return environment.get_template("report.html.j2").render(**context(doc))


def context(doc: dict[str, Any]) -> dict[str, Any]:
    """What the template shows, the worst scenarios first. Each scenario's jobs are read once, one at a time (from a
    lazy document, straight from a long run's job log): a job becomes its row, its compact timeline as JSON text,
    its latency samples, and its failures' rows in the list at the top of the page."""
    scenarios = sorted(doc["scenarios"], key=lambda s: -Outcome(s["outcome"]).rank)
    totals = doc.get("totals") or _totals(scenarios)
    verdict = _verdict(doc, totals)
    ran = next((s for s in scenarios if (s.get("database") or {}).get("url")), {})
    shown = [_scenario(s) for s in scenarios]
    data = '{"scenarios":[' + ",".join(s.pop("data") for s in shown) + "]}"
    listed = [row for s in shown for row in s.pop("listed")]
    return {
        "doc": doc, "verdict": verdict.upper().replace("_", " "), "verdict_class": verdict, "marks": MARKS,
        "totals": totals, "totals_line": _totals_line(totals, scenarios, sum(len(s["jobs"]) for s in shown)),
        "database": ran.get("database", {}).get("url", ""),
        "observation": (ran.get("observation") or {}).get("description", ""),
        "tags": sorted({t for s in scenarios for t in (s.get("plan") or {}).get("tags", [])}),
        "scenarios": shown, "data": data, "listed": listed[:LISTED], "unlisted": max(0, len(listed) - LISTED),
    }


def _verdict(doc: dict[str, Any], totals: dict[str, int]) -> str:
    if doc.get("exit_code") == 130 and not totals.get("errors"):
        return "interrupted"
    if doc.get("error") or totals.get("errors"):
        return "error"
    if totals.get("interrupted"):
        return "interrupted"
    return "failed" if totals.get("failed") else "passed"


def _totals(scenarios: list[dict[str, Any]]) -> dict[str, int]:
    """A report without totals (an older one) is counted as the session counts."""
    return dataclasses.asdict(Totals.count([Outcome(s["outcome"]) for s in scenarios]))


def _totals_line(totals: dict[str, int], scenarios: list[dict[str, Any]], jobs: int) -> str:
    duration = sum(s.get("duration") or 0 for s in scenarios)
    counts = Totals(**{f.name: totals.get(f.name, 0) for f in dataclasses.fields(Totals)}).counts()
    return f"{counts} · {jobs} job(s) · {format_seconds(duration)} of scenario time"  # the console's words


def _anchor(text: str) -> str:
    return "s-" + re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")


def _scenario(s: dict[str, Any]) -> dict[str, Any]:
    plan = s.get("plan") or {}
    anchor = _anchor(s["name"])
    codes = _Codes()
    own = frozenset(plan.get("expected_job_steps", []))
    rows, timelines, samples, jobs_listed = [], [], {}, []  # type: ignore[var-annotated]
    for j in s["jobs"]:
        job_anchor = f"{anchor}-job-{j['ordinal']}"
        failures = failurelist.failures(j["failures"], job_anchor)
        rows.append({"ordinal": j["ordinal"], "anchor": job_anchor, "outcome": j["outcome"], "job_id": j["job_id"],
                     "failures": failures,
                     "duration": format_seconds(j["duration"]) if j.get("duration") is not None else "unfinished",
                     "final": f"({j['final_state']['step']}, {j['final_state']['status']})" if j.get("final_state")
                     else "", "open": not Outcome(j["outcome"]).passing})
        jobs_listed += failurelist.job_entries(s, j, anchor, failures)
        timelines.append(_json(_timeline(j, codes, own)))
        compare.add_samples(samples, j)
    failures = failurelist.failures(s["failures"], anchor)
    return {
        "name": s["name"], "anchor": anchor, "file": s["file"], "outcome": s["outcome"], "error": s.get("error"),
        "note": s.get("note"), "description": s.get("description"), "attempts": s.get("attempts") or [],
        "tags": plan.get("tags", []), "duration": format_seconds(s.get("duration") or 0),
        "plan_line": _plan_line(plan), "failures": failures,
        "latency": _latency(s, plan, samples), "scale": charts.axis(charts.span(list(samples.values()))),
        "jobs": rows, "listed": failurelist.scenario_entries(s, anchor, failures) + jobs_listed,
        "data": '{"steps":' + _json(codes.steps) + ',"jobs":[' + ",".join(timelines) + "]}",
    }


class _Codes:
    """Step names as small numbers in a scenario's compact timelines (its `steps` list says which is which)."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, step: str) -> int:
        if step not in self._index:
            self._index[step] = len(self.steps)
            self.steps.append(step)
        return self._index[step]


def _plan_line(plan: dict[str, Any]) -> str:
    if not plan:
        return ""
    steps = " → ".join(plan.get("expected_steps", []) + plan.get("expected_job_steps", []))
    mode = plan.get("mode", "")
    return (f"{mode}, {plan.get('jobs') or 'timed'} job(s) × {plan.get('variants')} variants from "
            f"({plan.get('start')}, done): {steps}")


def _latency(s: dict[str, Any], plan: dict[str, Any], samples: dict[str, list[float]]) -> list[dict[str, Any]]:
    """The step latency table; its distributions share one scale (the table's axis), so steps compare at a glance."""
    limits = plan.get("latency_limits", {})
    scale = charts.span(list(samples.values()))
    rows = []
    for step, lat in s["latency"].items():
        limit = limits.get(step, {})
        over = any(lat[k] > v for k, v in limit.items() if k in lat)
        rows.append({"step": step, "n": lat["n"], "p50": format_seconds(lat["p50"]),
                     "p95": format_seconds(lat["p95"]), "max": format_seconds(lat["max"]),
                     "limit": ", ".join(f"{k} {format_seconds(v)}" for k, v in limit.items()), "over": over,
                     "plot": charts.histogram(samples.get(step, []), span=scale)})
    return rows


def _timeline(job: dict[str, Any], code: _Codes, own: frozenset[str]) -> dict[str, Any]:
    """A job's compact timeline: per lane, [step index, status index, ms since seeding, reconciled?]; the job row's
    `o`: where its own (job-level) steps start; `f`: where each failure was seen, as [lane, ms]."""
    lanes: list[dict[str, Any]] = [{"n": f"variant #{v['creation_order']}", "t": [_point(t, code) for t in v["trace"]]}
                                   for v in job["variants"]]
    if job["job_trace"]:
        trace = job["job_trace"]
        lanes.append({"n": "job row", "t": [_point(t, code) for t in trace],
                      "o": next((i for i, t in enumerate(trace) if t["step"] in own), len(trace))})
    return {"o": job["ordinal"], "lanes": lanes, "f": [m for f in job["failures"] if (m := _mark(f, job, lanes))]}


def _mark(failure: dict[str, Any], job: dict[str, Any], lanes: list[dict[str, Any]]) -> list[int] | None:
    """Where a failure goes on its job's timeline: its variant's lane (else the job row's), at the write that broke
    the rule (`at`), or at the lane's last write when no write did (a timeout, a final state)."""
    if not lanes:
        return None
    orders = [v["creation_order"] for v in job["variants"]]
    lane = orders.index(failure["creation_order"]) if failure.get("creation_order") in orders else len(lanes) - 1
    at = failure.get("at")
    ms = round(max(0.0, at) * 1000) if at is not None else max((p[2] for p in lanes[lane]["t"]), default=0)
    return [lane, ms]


def _point(t: dict[str, Any], code: _Codes) -> list[int]:
    status = STATUSES.index(t["status"]) if t["status"] in STATUSES else 3
    return [code(t["step"]), status, round(max(0.0, t["since_seed"]) * 1000), int(t["source"] == "reconcile")]


def _json(value: Any) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e")

"""N shards' JSON reports as one night (`ye-run report merge`): one document the JSON, JUnit and HTML writers take.

Scenarios are taken in the order of the reports given; a file that failed to load is in every
shard's report (each machine loads every file) and is kept once. What would make the night lie
is said in the merged report's `error` and its exit code (2): a scenario in two reports, and,
where the reports say which shard they hold (`shard`), a shard missing or given twice and a
selected scenario that no report holds (kept as not run, so it is never silently absent).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any

from runner import __version__
from runner.engine.results import ScenarioResult, Totals
from runner.engine.session import PRIORITY
from runner.errors import ExitCode
from runner.outcomes import Outcome

MISSING = "in no shard's report: its shard is missing or did not run it"


def merge(reports: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """One document of the reports (path, document), as a run of the whole selection would have written."""
    problems: list[str] = []
    scenarios = _scenarios(reports, problems)
    scenarios += _missing(reports, {s["name"] for s in scenarios}, problems)
    errors = [f"{path}: {doc['error']}" for path, doc in reports if doc.get("error")]
    exit_code = max([doc["exit_code"] for _, doc in reports] + ([ExitCode.BAD_INPUT] if problems else []),
                    key=PRIORITY.index)  # the worst shard's is the night's
    return {
        "format": 1,
        "error": "\n".join(errors + problems) or None,
        "ye_run_version": __version__,
        "started_at": min((doc["started_at"] for _, doc in reports), key=datetime.fromisoformat),
        "finished_at": max((doc["finished_at"] for _, doc in reports), key=datetime.fromisoformat),
        "exit_code": exit_code,
        "scenarios": scenarios,
        "totals": totals(scenarios),
        "merged_from": [str(path) for path, _ in reports],
    }


def totals(scenarios: list[dict[str, Any]]) -> dict[str, int]:
    """The grand total of a report's scenarios, as the session counts it."""
    counted = Totals.count([Outcome(s["outcome"]) for s in scenarios],
                           sum(bool((s.get("cleanup") or {}).get("error")) for s in scenarios),
                           sum(bool(s.get("invalid")) for s in scenarios))
    return dataclasses.asdict(counted)


def line(doc: dict[str, Any]) -> str:
    """The merged night's grand total, as the console's last line says it."""
    seconds = (datetime.fromisoformat(doc["finished_at"]) - datetime.fromisoformat(doc["started_at"])).total_seconds()
    return Totals(**doc["totals"]).line(max(0.0, seconds))


def _scenarios(reports: list[tuple[Path, dict[str, Any]]], problems: list[str]) -> list[dict[str, Any]]:
    """Every report's scenarios in order; an invalid file once; a scenario met in an earlier report is a problem."""
    kept: list[dict[str, Any]] = []
    seen: dict[str, Path] = {}
    invalid: set[tuple[str, str]] = set()
    for path, doc in reports:
        for scenario in doc["scenarios"]:
            if scenario.get("invalid"):
                key = (scenario["file"], scenario["error"] or "")
                if key not in invalid:
                    invalid.add(key)
                    kept.append(scenario)
            elif scenario["name"] in seen:
                problems.append(f"scenario {scenario['name']!r} is in {seen[scenario['name']]} and in {path}: "
                                f"the shards overlap (only the first is kept); do all machines read the same "
                                f"durations? (--shard-durations pins them)")
            else:
                seen[scenario["name"]] = path
                kept.append(scenario)
    return kept


def _missing(reports: list[tuple[Path, dict[str, Any]]], present: set[str],
             problems: list[str]) -> list[dict[str, Any]]:
    """Where the reports say their shard: shards missing or given twice, and each selected scenario no report holds,
    as a not-run entry."""
    shards = [(path, doc["shard"]) for path, doc in reports if doc.get("shard")]
    if not shards:
        return []
    count = shards[0][1]["count"]
    indexes = [shard["index"] for _, shard in shards]
    if any(shard["count"] != count for _, shard in shards):
        problems.append("the reports hold shards of different splits: " +
                        ", ".join(f"{path}: {shard['index']}/{shard['count']}" for path, shard in shards))
    problems += [f"shard {k}/{count} is given twice" for k in sorted(set(indexes)) if indexes.count(k) > 1]
    problems += [f"shard {k}/{count} is missing" for k in range(1, count + 1) if k not in indexes]
    selection = list(dict.fromkeys(name for _, shard in shards for name in shard["selection"]))
    absent = [name for name in selection if name not in present]
    problems += [f"scenario {name!r} {MISSING}" for name in absent]
    from runner.report import json_report

    now = max((datetime.fromisoformat(doc["finished_at"]) for _, doc in reports))
    entries = [ScenarioResult(name, "", "", outcome=Outcome.NOT_RUN, note=MISSING) for name in absent]
    return json_report.document(entries, 0, now, now)["scenarios"]

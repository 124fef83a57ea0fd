"""What a run will do, worked out from the scenario alone (`--dry-run` prints it; nothing is touched)."""

from __future__ import annotations

import dataclasses
from typing import Any

from runner.db import images as images_module
from runner.durations import format_seconds
from runner.scenario.model import Scenario


def build(scenario: Scenario, database: str) -> dict[str, Any]:
    """The plan as data (it also goes into the JSON report)."""
    return {**_what(scenario, database), **_expectations(scenario), **_limits(scenario)}


def _rows_per_job(scenario: Scenario) -> dict[str, int]:
    per_job: dict[str, int] = {"tenants (upsert, first job)": 1, "jobs": 1,
                               "image_assets (first job; then shared)": 1, "job_inputs": 1,
                               "jobs_variants": scenario.variants}
    for row in scenario.seed_rows:
        per_job[row.table] = per_job.get(row.table, 0) + 1
    for fixture in scenario.fixtures:
        per_job[fixture.table] = per_job.get(fixture.table, 0) + len(fixture.rows)
    return per_job


def _what(scenario: Scenario, database: str) -> dict[str, Any]:
    """Where, which jobs, what each one seeds."""
    mode = scenario.mode
    image = images_module.first_existing(scenario.images, scenario.at("$.images"))
    width, height, fmt = images_module.inspect(image)
    definition = scenario.definition
    return {
        "scenario": scenario.name,
        "tags": list(scenario.tags),
        "file": str(scenario.path),
        "database": database,
        "tenant": {"id": scenario.tenant.id, "isolated": scenario.tenant.isolate},
        "mode": mode.type,
        "jobs": mode.job_limit,
        "duration": mode.duration,
        "interval": mode.interval if mode.type == "interval" else None,
        "max_in_flight": mode.max_in_flight if mode.type == "interval" else None,
        "variants": scenario.variants,
        "start": scenario.start,
        "rows_per_job": _rows_per_job(scenario),
        "seed_rows": _seed_rows(scenario),
        "image": {"path": str(image), "width": width, "height": height, "format": fmt},
        "simulated_step": _simulated(scenario),
        "simulation_delay": scenario.simulate_img_gen.delay,
        "simulated_failures": list(scenario.simulate_img_gen.fail_variants),
        "definition": {"name": definition.name, "source": definition.source, "sha256": definition.sha256,
                       "job_row": definition.job_row},
        "observe": scenario.observe,
        "cleanup": scenario.cleanup,
    }


def _expectations(scenario: Scenario) -> dict[str, Any]:
    """What must happen: steps, final states, failures, retries, detections, SQL checks."""
    expect = scenario.expect
    return {
        "expected_steps": list(expect.steps),
        "expected_job_steps": list(expect.job_steps),
        "final_variant": [expect.final_variant.step, expect.final_variant.status],
        "final_job": [expect.final_job.step, expect.final_job.status] if expect.final_job else None,
        "expected_failures": [{"step": f.step, "variants": list(f.variants) if f.variants else "all",
                               "required": f.required} for f in expect.failures + expect.job_failures],
        "retries": {step: {"min": r.min, "max": r.max} for step, r in expect.retries},
        "detect": [str(d) for d in expect.detect],
        "sql_checks": [c.name for c in expect.sql],
        "sql_queries": [{"name": c.name, "query": " ".join(c.query.split()),
                         "expect": c.value.describe() if c.value else f"{c.rows} row(s)"} for c in expect.sql],
    }


def _limits(scenario: Scenario) -> dict[str, Any]:
    """How fast, how long, and what the reference pipeline is told to do."""
    expect = scenario.expect
    return {
        "latency_limits": _latency_limits(scenario),
        "job_latency_limits": dict(expect.job_latency.given()),
        "reference_pipeline": {
            "faults": [_fault(f) for f in scenario.reference_pipeline.faults],
            "latency": {step: dataclasses.asdict(lat) for step, lat in scenario.reference_pipeline.latency},
            "default_latency": dataclasses.asdict(scenario.reference_pipeline.default_latency),
            "stop_after": scenario.reference_pipeline.stop_after},
        "timeouts": {"step": scenario.timeouts.step, "steps": dict(scenario.timeouts.steps),
                     "stall": scenario.timeouts.stall, "job": scenario.timeouts.job,
                     "definition": {s: t for s, t in scenario.timeouts.bounds
                                    if t != scenario.timeouts.step and s not in dict(scenario.timeouts.steps)}},
    }


def _latency_limits(scenario: Scenario) -> dict[str, dict[str, float]]:
    """Each expected step's limits as they hold: its own, else `expect.latency.default`'s."""
    expect = scenario.expect
    found = {step: {level: limit for level, limit, _ in expect.latency_limits(step)}
             for step in (*expect.steps, *expect.job_steps)}
    return {step: limits for step, limits in found.items() if limits}


def _seed_rows(scenario: Scenario) -> list[dict[str, str]]:
    """The definition's seed rows: what each job gets beyond the core rows, or why it does not."""
    out = [{"name": r.name, "table": r.table, "says": f"{r.name} -> {r.table} (skipped where the database has no "
                                                     f"such table)"} for r in scenario.seed_rows]
    return out + [{"name": name, "table": "", "says": f"{name} left out (seed_rows: {{{name}: false}})"}
                  for name in scenario.seed_rows_left_out]


def _simulated(scenario: Scenario) -> dict[str, str | None]:
    """Who writes the definition's simulated (YE) step, named as the definition names it."""
    step = scenario.definition.simulated_step
    if step is None:
        return {"step": None, "says": "no simulated step: the pipeline runs every step"}
    if scenario.start != scenario.definition.seed:
        return {"step": step, "says": f"{step} not run (start: {scenario.start})"}
    who = "simulated by the runner" if scenario.simulate_img_gen.enabled else "run by the pipeline's YE part"
    return {"step": step, "says": f"{step} {who}"}


def _fault(fault: Any) -> dict[str, Any]:
    """A fault as written: its kind and step, and the targets that differ from the defaults."""
    out = {"kind": fault.kind, "step": fault.step}
    for key in ("variants", "jobs", "to"):
        if getattr(fault, key) is not None:
            out[key] = list(getattr(fault, key)) if key != "to" else fault.to
    if fault.probability < 1:
        out["probability"] = fault.probability
    if fault.kind == "fail_then_retry":
        out["times"] = fault.times
    return out


def render(plan: dict[str, Any]) -> str:
    """The plan for people."""
    return "\n".join(_head_lines(plan) + _expectation_lines(plan) + _limit_lines(plan))


def _job_count(plan: dict[str, Any]) -> str:
    jobs = plan["jobs"]
    count = f"{jobs} job(s)" if jobs is not None else "jobs"
    if plan["duration"] is not None:
        count += f" for up to {format_seconds(plan['duration'])}"
    if plan["mode"] == "interval":
        count += f", one every {format_seconds(plan['interval'])}, at most {plan['max_in_flight']} in flight"
    return count


def _head_lines(plan: dict[str, Any]) -> list[str]:
    count = _job_count(plan)
    return [
        f"scenario {plan['scenario']} ({plan['file']})",
        f"  database:   {plan['database']}",
        f"  tenant:     {plan['tenant']['id']}" + (" + run id (isolated)" if plan["tenant"]["isolated"] else ""),
        f"  mode:       {plan['mode']}: {count}",
        "  per job:    " + ", ".join(f"{table} {n}" for table, n in plan["rows_per_job"].items()),
        *(f"  seed row:   {row['says']}" for row in plan["seed_rows"]),
        f"  image:      {plan['image']['path']} ({plan['image']['width']}x{plan['image']['height']} "
        f"{plan['image']['format']})",
        f"  start:      ({plan['start']}, done); {plan['simulated_step']['says']}",
        f"  steps:      {' -> '.join(plan['expected_steps'])}"
        + (f"; then the job row: {' -> '.join(plan['expected_job_steps'])}" if plan["expected_job_steps"] else ""),
        f"  pipeline:   {plan['definition']['name']} ({plan['definition']['source']}, "
        f"sha256 {plan['definition']['sha256'][:12]}; job row: {plan['definition']['job_row']})",
        f"  final:      variants ({', '.join(plan['final_variant'])})"
        + (f"; job ({', '.join(plan['final_job'])})" if plan["final_job"] else
           "; job row as the pipeline definition's job-row rule predicts"),
    ]


def _expectation_lines(plan: dict[str, Any]) -> list[str]:
    lines = []
    for failure in plan["expected_failures"]:
        lines.append(f"  failure:    {failure['step']} for variant(s) {failure['variants']}"
                     + ("" if failure["required"] else " (allowed, not required)"))
    for step, counts in plan["retries"].items():
        lines.append(f"  retries:    {step}: " + (f"{counts['min']}..{counts['max']}" if counts["min"] else
                                                   f"at most {counts['max']}") + " per variant")
    for detection in plan["detect"]:
        lines.append(f"  detect:     {detection} (must be reported)")
    groups: dict[str, list[str]] = {}
    for step, limits in [*plan["latency_limits"].items(), ("jobs end to end", plan.get("job_latency_limits"))]:
        if limits:
            groups.setdefault(", ".join(f"{k} <= {format_seconds(v)}" for k, v in limits.items()), []).append(step)
    lines += [f"  latency:    {', '.join(steps)}: {limits}" for limits, steps in groups.items()]
    for check in plan["sql_queries"]:
        lines.append(f"  sql check:  {check['name']}: {check['query']} -> {check['expect']}")
    return lines


def _limit_lines(plan: dict[str, Any]) -> list[str]:
    lines = []
    timeouts = plan["timeouts"]
    overrides = ", ".join(f"{s} {format_seconds(v)}" for s, v in {**timeouts["definition"],
                                                                  **timeouts["steps"]}.items())
    reference = plan["reference_pipeline"]
    for fault in reference["faults"]:
        targets = ", ".join(f"{k} {v}" for k, v in fault.items() if k not in ("kind", "step"))
        lines.append(f"  inject:     {fault['kind']} at {fault['step']}" + (f" ({targets})" if targets else "")
                     + " (reference pipeline, embedded default only)")
    lines += [
        f"  timeouts:   step {format_seconds(timeouts['step'])}" + (f" ({overrides})" if overrides else "")
        + f", stall {format_seconds(timeouts['stall'])}, job {format_seconds(timeouts['job'])}",
        f"  observe:    {'yes' if plan['observe'] else 'no (seed only)'}; cleanup: {plan['cleanup']}",
    ]
    return lines

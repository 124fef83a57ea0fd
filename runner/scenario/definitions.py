"""Pipeline definition files: cross-field checks a JSON Schema cannot make, and the dataclasses.

Runs on documents that passed `schemas/definition.schema.json`; every complaint is located.
"""

from __future__ import annotations

from typing import Any

from runner.definition import Definition, Step
from runner.errors import Problem
from runner.scenario.yamlsource import Located, locate, path_text

Parts = list[str | int]


def _name(entry: Any) -> str:
    return entry if isinstance(entry, str) else entry["name"]


def problems(doc: dict[str, Any], root: Located) -> list[Problem]:
    """Every inconsistency of a schema-valid definition."""
    found: list[Problem] = []

    def add(parts: Parts, message: str) -> None:
        mark = locate(root, parts)
        found.append(Problem(mark.file, mark.line, mark.col, path_text(parts), message))

    statuses = doc.get("statuses", ["queued", "running", "done", "failed"])
    for needed in ("done", "failed"):
        if needed not in statuses:
            add(["statuses"], f"the statuses must include {needed!r}")
    seen: dict[str, str] = {}
    simulated = []
    for level in ("variant_steps", "job_steps"):
        names = [_name(e) for e in doc.get(level, [])]
        for i, entry in enumerate(doc.get(level, [])):
            name = _name(entry)
            here = f"{level}[{i}]"
            if name in seen:
                add([level, i], f"step {name!r} is defined twice (first at {seen[name]})")
                continue
            seen[name] = here
            _step_problems(entry if isinstance(entry, dict) else {"name": entry}, level, i, names, statuses, add)
            if isinstance(entry, dict) and entry.get("simulated"):
                simulated.append((level, i))
    for level, i in simulated[1:]:
        add([level, i, "simulated"], "only one step can be the simulated YE step")
    for level, i in simulated[:1]:
        if level == "job_steps" or i != 1:
            add([level, i, "simulated"], "the simulated step must be variant_steps[1], right after the seeded "
                                         "step: the runner writes it to variants it seeded")
    variant_names = [_name(e) for e in doc["variant_steps"]]
    for i, state in enumerate(doc.get("seed_states", [])):
        if state not in variant_names:
            add(["seed_states", i], f"{state!r} is not a variant step ({', '.join(variant_names)})")
    return found


def _step_problems(entry: dict[str, Any], level: str, i: int, names: list[str], statuses: list[str],
                   add) -> None:  # type: ignore[no-untyped-def]
    if level == "variant_steps" and i == 0 and set(entry) == {"name"}:
        return  # the seeded state: never run, so it writes nothing and is never retried
    writes = entry.get("writes", ["running", "done"])
    for j, status in enumerate(writes):
        if status not in statuses:
            where = [level, i, "writes", j] if "writes" in entry else [level, i]
            add(where, f"{status!r} is not one of the statuses ({', '.join(statuses)})"
                + ("" if "writes" in entry else "; the step writes [running, done] unless `writes` says otherwise"))
    if writes[-1] != "done" or "failed" in writes:
        add([level, i, "writes"], "a normal run ends with 'done' and never writes 'failed'")
    retry = entry.get("retry_to")
    if retry is None:
        if "queued" not in statuses:
            add([level, i], "a failed step is retried at (step, queued), and 'queued' is not one of the statuses "
                            "(add it, or give the step a retry_to)")
        return
    _retry_problems(entry["name"], retry, [level, i, "retry_to"], names[: i + 1], statuses, level, add)


def _retry_problems(name: str, retry: dict[str, Any], parts: Parts, allowed: list[str], statuses: list[str],
                    level: str, add) -> None:  # type: ignore[no-untyped-def]
    """A retry must land where the pipeline picks the row up again, so the step runs once more."""
    target, status = retry["step"], retry.get("status", "done")
    if target not in allowed:
        add(parts + ["step"], f"a retry returns to this step or an earlier one on the same row "
                              f"({', '.join(allowed)}); got {target!r}")
    if status not in statuses:
        add(parts + ["status"], f"{status!r} is not one of the statuses")
    elif status == "failed" or (target == name and status == "done"):
        add(parts, f"a retry goes where the step runs again: ({target}, {status}) would not run it again")
    elif status not in ("queued", "done"):
        add(parts + ["status"], f"a retry goes to 'queued' (the step is queued to run again) or to 'done' at an "
                                f"earlier step (the pipeline moves on from there); nothing picks up a row left "
                                f"{status!r}, so the variant would wait for its timeout")
    elif level == "variant_steps" and target == allowed[0] and status == "queued":
        add(parts + ["status"], f"{target} is the seeded step and never runs: a retry to it goes to "
                                f"({target}, done), where the pipeline starts the variant over")


def build(doc: dict[str, Any], source: str, sha256: str) -> Definition:
    """The Definition a checked document describes."""
    variant = tuple(_step(e, "variant") for e in doc["variant_steps"])
    job = tuple(_step(e, "job") for e in doc.get("job_steps", []))
    return Definition(
        variant_steps=variant,
        job_steps=job,
        seed_states=tuple(doc.get("seed_states", [variant[0].name])),
        statuses=tuple(doc.get("statuses", ("queued", "running", "done", "failed"))),
        job_row=doc.get("job_row", "together"),
        name=doc.get("name", source),
        source=source,
        sha256=sha256,
    )


def _step(entry: Any, level: str) -> Step:
    if isinstance(entry, str):
        return Step(entry, level)  # type: ignore[arg-type]
    retry = entry.get("retry_to")
    return Step(entry["name"], level, tuple(entry.get("writes", ("running", "done"))),  # type: ignore[arg-type]
                (retry["step"], retry.get("status", "done")) if retry else None, entry.get("simulated", False))

"""Pipeline definition files: cross-field checks a JSON Schema cannot make, and the dataclasses.

Runs on documents that passed `schemas/definition.schema.json`; every complaint is located.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner import durations
from runner.definition import STEP_TIMEOUT, Definition, SeedRow, Step
from runner.errors import Problem, ScenarioError
from runner.scenario import yamlsource
from runner.scenario.semantics import PLACEHOLDER, PLACEHOLDER_NAMES
from runner.scenario.yamlsource import Located, locate, path_text

Parts = list[str | int]
SEED_ROW_PLACEHOLDERS = "${job.id}, ${tenant.id}, ${image.id}, ${scenario.ad_copy}"


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
            if isinstance(entry, dict) and "timeout" in entry:
                _timeout_problems(entry["timeout"], [level, i, "timeout"], add)
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
    _seed_row_problems(doc.get("seed_rows", []), add)
    return found


def _timeout_problems(text: str, parts: Parts, add) -> None:  # type: ignore[no-untyped-def]
    message = durations.problem(text)
    if message is None and durations.parse(text) == 0:
        message = "a step's bound must be longer than 0"
    if message:
        add(parts, message)


def _seed_row_problems(rows: list[dict[str, Any]], add) -> None:  # type: ignore[no-untyped-def]
    """Names are unique; values name the job, never one of its variants (their number is the scenario's)."""
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        if row["name"] in seen:
            first = seen[row["name"]]
            add(["seed_rows", i], f"seed row {row['name']!r} is declared twice (first at seed_rows[{first}])")
            continue
        seen[row["name"]] = i
        for column, value in row["values"].items():
            for name in PLACEHOLDER.findall(value) if isinstance(value, str) else ():
                match = PLACEHOLDER_NAMES.match(name)
                if match is None:
                    add(["seed_rows", i, "values", column], f"unknown placeholder ${{{name}}}; available: "
                                                            f"{SEED_ROW_PLACEHOLDERS}")
                elif match.group(2):
                    add(["seed_rows", i, "values", column], "a seed row belongs to the job, and a job's variants "
                        f"vary in number: ${{{name}}} cannot be used here (available: {SEED_ROW_PLACEHOLDERS})")


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


def build(doc: dict[str, Any], source: str, sha256: str, root: Located | None = None) -> Definition:
    """The Definition a checked document describes; `root` (else the file, read again) says where its seed rows
    were written, for refusals found against a database."""
    variant = tuple(_step(e, "variant") for e in doc["variant_steps"])
    job = tuple(_step(e, "job") for e in doc.get("job_steps", []))
    return Definition(
        variant_steps=variant,
        job_steps=job,
        seed_states=tuple(doc.get("seed_states", [variant[0].name])),
        seed_rows=_seed_rows(doc.get("seed_rows", []), source, root),
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
                (retry["step"], retry.get("status", "done")) if retry else None, entry.get("simulated", False),
                durations.parse(entry["timeout"]) if "timeout" in entry else STEP_TIMEOUT)


def _seed_rows(rows: list[dict[str, Any]], source: str, root: Located | None) -> tuple[SeedRow, ...]:
    root = root if root is not None or not rows else _reread(source)

    def at(parts: Parts) -> str:
        if root is None:
            return f"{source}: {path_text(parts)}"
        mark = locate(root, parts)
        return f"{mark.file}:{mark.line}:{mark.col}: {path_text(parts)}"

    return tuple(SeedRow(row["name"], row["table"], tuple(row["values"].items()), at(["seed_rows", i]),
                         tuple((c, at(["seed_rows", i, "values", c])) for c in row["values"]))
                 for i, row in enumerate(rows))


def _reread(source: str) -> Located | None:
    """The file's positions, when the caller kept none (the file was read and checked a moment ago)."""
    try:
        return yamlsource.read(Path(source), source)
    except (ScenarioError, OSError):
        return None

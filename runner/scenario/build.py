"""Schema-valid scenario documents -> frozen Scenario dataclasses, defaults applied."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from runner import durations
from runner.definition import DEFAULT, Definition, SeedRow
from runner.outcomes import FailureKind
from runner.pipeline import config as pipeline_config
from runner.resources import default_images_dir
from runner.scenario import model
from runner.scenario.semantics import expected_steps, resolve_image
from runner.scenario.yamlsource import Located, join_path, locate, path_text
from runner.sqlvalue import PERCENT, TESTS, ValueTest


def scenario(doc: dict[str, Any], root: Located, path: Path, definition: Definition = DEFAULT) -> model.Scenario:
    """The Scenario a validated document describes; `path` is the file it came from."""
    start = doc.get("start", definition.seed_states[0])
    seed_rows, left_out = _seed_rows(doc.get("seed_rows", {}), root, definition)
    return model.Scenario(
        path=path,
        name=doc.get("name") or path.stem,
        description=doc.get("description", ""),
        tags=tuple(doc.get("tags", ())),
        tenant=model.Tenant(**doc.get("tenant", {})),
        store=_row_ref(doc.get("store", "none")),
        tone_style=_row_ref(doc.get("tone_style", "none")),
        images=_images(doc, root),
        job_inputs=_job_inputs(doc.get("job_inputs", {})),
        variants=doc.get("variants", 3),
        start=start,
        mode=_mode(doc.get("mode", "once")),
        simulate_img_gen=_simulation(doc.get("simulate_img_gen", False)),
        observe=doc.get("observe", True),
        cleanup=doc.get("cleanup", "on_success"),
        expect=_expect(doc, root, definition),
        timeouts=_timeouts(doc.get("timeouts", {}), definition),
        fixtures=tuple(_fixture(f) for f in doc.get("fixtures", ())),
        ad_copy=doc.get("ad_copy", model.DEFAULT_AD_COPY),
        seed_rows=seed_rows,
        seed_rows_left_out=left_out,
        reference_pipeline=pipeline_config.build(doc.get("reference_pipeline")),
        definition=definition,
        source=model.SourceMap(str(path), dict(_marks(root, "$"))),
    )


def _marks(node: Located, path: str):  # type: ignore[no-untyped-def]
    """(JSON path, origin) of every value in a located tree."""
    yield path, model.Origin(node.mark.file, node.mark.line, node.mark.col)
    if isinstance(node.value, dict):
        for key, (_, child) in node.value.items():
            yield from _marks(child, join_path(path, key))
    elif isinstance(node.value, list):
        for index, child in enumerate(node.value):
            yield from _marks(child, join_path(path, index))


def _row_ref(value: Any) -> model.RowRef:
    if isinstance(value, dict):
        return model.RowRef("id", value["id"])
    return model.RowRef(value)


def _images(doc: dict[str, Any], root: Located) -> tuple[Path, ...]:
    if "images" not in doc:
        return tuple(default_images_dir() / name for name in model.DEFAULT_IMAGE_NAMES)
    return tuple(resolve_image(root, i) for i in range(len(doc["images"])))


def _job_inputs(doc: dict[str, Any]) -> model.JobInputs:
    defaults = model.JobInputs()
    return model.JobInputs(desc_kor=doc.get("desc_kor", defaults.desc_kor),
                           extra=tuple(doc.get("extra", {}).items()))


def _mode(value: Any) -> model.Mode:
    if isinstance(value, str):
        return model.Mode(type=value)
    defaults = model.Mode()
    return model.Mode(
        type=value["type"],
        jobs=value.get("jobs"),
        duration=durations.parse(value["duration"]) if "duration" in value else None,
        interval=durations.parse(value["interval"]) if "interval" in value else defaults.interval,
        max_in_flight=value.get("max_in_flight", defaults.max_in_flight),
    )


def _simulation(value: Any) -> model.Simulation:
    if isinstance(value, bool):
        return model.Simulation(enabled=value)
    return model.Simulation(
        enabled=True,
        delay=durations.parse(value.get("delay", "0")),
        fail_variants=tuple(value.get("fail_variants", ())),
    )


def _expect(doc: dict[str, Any], root: Located, definition: Definition) -> model.Expectations:
    expect = doc.get("expect", {})
    steps = expected_steps(doc, definition)
    expected = tuple(s for s in steps if definition.level(s) == "variant")
    final = expect.get("final", {})
    return model.Expectations(
        steps=expected,
        job_steps=tuple(s for s in steps if definition.level(s) == "job"),
        final_variant=_state(final["variant"]) if "variant" in final else model.State(expected[-1], "done"),
        final_variant_given="variant" in final,
        final_job=_state(final["job"]) if "job" in final else None,
        retries=tuple((step, _retries(value)) for step, value in expect.get("retries", {}).items()),
        detect=tuple(model.Detection(FailureKind(d["kind"]), d.get("step"),
                                     tuple(d["variants"]) if "variants" in d else None)
                     for d in expect.get("detect", ())),
        failures=tuple(_failure(f) for f in expect.get("failures", ()) if definition.level(f["step"]) == "variant"),
        job_failures=tuple(_failure(f) for f in expect.get("failures", ()) if definition.level(f["step"]) == "job"),
        latency=tuple((step, _latency(limits)) for step, limits in expect.get("latency", {}).items()
                      if step != "default"),
        latency_default=_latency(expect.get("latency", {}).get("default", {})),
        job_latency=_latency(expect.get("job_latency", {})),
        sql=tuple(_sql(check, _origin(root, ["expect", "sql", i, "query"]))
                  for i, check in enumerate(expect.get("sql", ()))),
    )


def _state(value: dict[str, Any]) -> model.State:
    return model.State(value["step"], value.get("status", "done"))


def _failure(value: dict[str, Any]) -> model.ExpectedFailure:
    targets = value.get("variants", "all")
    return model.ExpectedFailure(
        step=value["step"],
        variants=None if targets == "all" else tuple(targets),
        required=value.get("required", True),
    )


def _retries(value: Any) -> model.Retries:
    if isinstance(value, int):
        return model.Retries(max=value)
    return model.Retries(max=value.get("max", value["min"]), min=value["min"],
                         variants=tuple(value["variants"]) if "variants" in value else None)


def _latency(limits: dict[str, str]) -> model.LatencyLimit:
    return model.LatencyLimit(**{key: durations.parse(text) for key, text in limits.items()})


def _sql(check: dict[str, Any], origin: model.Origin) -> model.SqlCheck:
    return model.SqlCheck(name=check["name"], query=check["query"], rows=check.get("rows"),
                          value=_value_test(check), origin=origin)


def _value_test(check: dict[str, Any]) -> ValueTest | None:
    """The check's test of its value (validation saw to it that there is at most one)."""
    test = next((key for key in TESTS if key in check), None)
    if test is None:
        return None
    given = check[test]
    if test == "between":
        return ValueTest(test, (given[0], given[1]))
    if test != "approx":
        return ValueTest(test, given)
    tolerance = given["tolerance"]
    percent = PERCENT.match(tolerance) if isinstance(tolerance, str) else None
    return ValueTest(test, given["value"], float(percent.group(1)) if percent else tolerance, percent is not None)


def _origin(root: Located, parts: list[str | int]) -> model.Origin:
    mark = locate(root, parts)
    return model.Origin(mark.file, mark.line, mark.col)


def _timeouts(value: dict[str, Any], definition: Definition) -> model.Timeouts:
    defaults = model.Timeouts()
    return model.Timeouts(
        bounds=() if "step" in value else tuple((s.name, s.timeout) for s in definition.steps),
        step=durations.parse(value["step"]) if "step" in value else defaults.step,
        steps=tuple((step, durations.parse(text)) for step, text in value.get("steps", {}).items()),
        stall=durations.parse(value["stall"]) if "stall" in value else defaults.stall,
        job=durations.parse(value["job"]) if "job" in value else defaults.job,
        grace=durations.parse(value["grace"]) if "grace" in value else defaults.grace,
    )


def _fixture(value: dict[str, Any]) -> model.Fixture:
    return model.Fixture(table=value["table"], rows=tuple(tuple(row.items()) for row in value["rows"]))


def _seed_rows(chosen: dict[str, Any], root: Located,
               definition: Definition) -> tuple[tuple[SeedRow, ...], tuple[str, ...]]:
    """The definition's seed rows as the scenario chose them: overridden value by value, or left out."""
    rows: list[SeedRow] = []
    left_out: list[str] = []
    for row in definition.seed_rows:
        choice = chosen.get(row.name, True)
        if choice is False:
            left_out.append(row.name)
        elif choice is True:
            rows.append(row)
        else:
            rows.append(_overridden(row, choice["values"], root))
    return tuple(rows), tuple(left_out)


def _overridden(row: SeedRow, values: dict[str, Any], root: Located) -> SeedRow:
    merged, origins = dict(row.values), dict(row.origins)
    for column, value in values.items():
        parts: list[str | int] = ["seed_rows", row.name, "values", column]
        mark = locate(root, parts)
        merged[column] = value
        origins[column] = f"{mark.file}:{mark.line}:{mark.col}: {path_text(parts)}"
    return dataclasses.replace(row, values=tuple(merged.items()), origins=tuple(origins.items()))

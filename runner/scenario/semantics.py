"""Checks a JSON Schema cannot express: step order, cross references, placeholders, SQL.

Runs only on documents that passed the schema, so shapes and types are known here.
Every complaint is located at the offending key or value.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner.definition import DEFAULT, Definition
from runner.errors import Problem
from runner.scenario.measures import latency_problems, sql_problems
from runner.scenario.yamlsource import Located, locate, path_text

PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
PLACEHOLDER_NAMES = re.compile(r"^(job\.id|tenant\.id|image\.id|variant\.([1-9][0-9]*)\.id|scenario\.ad_copy)$")
SEEDED_JOB_INPUT_COLUMNS = ("job_id", "img_asset_id", "tone_style_id", "desc_kor", "created_at", "updated_at")
MISSING_IMAGE = "이미지 파일을 찾을 수 없습니다"


class Checker:
    """Collects located problems for one schema-valid scenario document."""

    def __init__(self, doc: dict[str, Any], root: Located, definition: Definition = DEFAULT):
        self.doc = doc
        self.root = root
        self.definition = definition
        self.problems: list[Problem] = []

    def add(self, parts: list[str | int], message: str, at_key: bool = False) -> None:
        mark = locate(self.root, parts, at_key=at_key)
        self.problems.append(Problem(mark.file, mark.line, mark.col, path_text(parts), message))

    def run(self) -> list[Problem]:
        for check in (self.images, self.mode, self.simulation, self.expected_steps, self.step_keys,
                      self.failures, self.impossible_failures, self.retry_ranges, self.detections,
                      self.final_states, self.latency, self.sql,
                      self.fixtures, self.seed_rows, self.job_inputs, self.reference_pipeline):
            check()
        return self.problems

    # --- what the scenario seeds -------------------------------------------------------

    @property
    def start(self) -> str:
        return self.doc.get("start", self.definition.seed_states[0])

    @property
    def variant_count(self) -> int:
        return self.doc.get("variants", 3)

    def images(self) -> None:
        if "images" not in self.doc:
            return
        candidates = [resolve_image(self.root, i) for i in range(len(self.doc["images"]))]
        if not any(path.is_file() for path in candidates):
            tried = ", ".join(str(p) for p in candidates)
            folder = os.path.dirname(self.root.value["images"][1].mark.file) or "."
            self.add(["images"], f"{MISSING_IMAGE} (image file not found); tried: {tried} (relative paths are "
                                 f"resolved against the folder of the file that lists them: {folder})")

    def job_inputs(self) -> None:
        for column in self.doc.get("job_inputs", {}).get("extra", {}):
            if column in SEEDED_JOB_INPUT_COLUMNS:
                self.add(["job_inputs", "extra", column], f"{column!r} is set by ye-run itself; "
                         "it cannot be an extra column", at_key=True)

    def mode(self) -> None:
        mode = self.doc.get("mode", "once")
        kind = mode if isinstance(mode, str) else mode["type"]
        if kind == "wait_for_completion" and self.doc.get("observe", True) is False:
            self.add(["observe"], "mode 'wait_for_completion' needs to observe jobs finish; use once or interval "
                     "with observe: false")
        if isinstance(mode, str):
            return
        if kind == "once" and mode.get("jobs", 1) != 1:
            self.add(["mode", "jobs"], f"mode 'once' runs one job; use wait_for_completion or interval "
                     f"for {mode['jobs']}")
        if kind == "once" and "duration" in mode:
            self.add(["mode", "duration"], "mode 'once' runs one job; a duration needs "
                     "wait_for_completion or interval", at_key=True)
        for key in ("interval", "max_in_flight"):
            if key in mode and kind != "interval":
                self.add(["mode", key], f"{key!r} applies to mode 'interval' only", at_key=True)

    def simulation(self) -> None:
        sim = self.doc.get("simulate_img_gen", False)
        if sim is False:
            return
        simulated, seed = self.definition.simulated_step, self.definition.seed
        if simulated is None:
            self.add(["simulate_img_gen"], "the pipeline definition marks no step as simulated (the YE part); "
                     "nothing can be simulated")
            return
        if self.start != seed:
            self.add(["simulate_img_gen"], f"{simulated} can only be simulated when the variants start at "
                     f"{seed} (this scenario has start: {self.start})")
            return
        rerun = _reruns(self.definition, simulated)
        if rerun is not None:
            self.add(["simulate_img_gen"], f"the runner writes {simulated} once per variant, but the pipeline "
                     f"definition retries {rerun[0]} to ({rerun[1][0]}, {rerun[1][1]}), after which {simulated} "
                     "must run again; let the pipeline's YE part run it (no simulate_img_gen)")
            return
        if not isinstance(sim, dict):
            return
        for i, order in enumerate(sim.get("fail_variants", [])):
            if order > self.variant_count:
                self.add(["simulate_img_gen", "fail_variants", i], self._no_variant(order))
            elif not self._declares_failure(simulated, order):
                self.add(["simulate_img_gen", "fail_variants", i],
                         f"variant #{order} is made to fail at {simulated}, but expect.failures does not declare "
                         f"it (add {{step: {simulated}, variants: [{order}]}})")

    def _no_variant(self, order: int) -> str:
        return f"variant #{order} does not exist: this scenario seeds {self.variant_count} variant(s)"

    def _declares_failure(self, step: str, order: int) -> bool:
        for failure in self.doc.get("expect", {}).get("failures", []):
            targets = failure.get("variants", "all")
            if failure["step"] == step and (targets == "all" or order in targets):
                return True
        return False

    # --- expectations ------------------------------------------------------------------

    def expected_steps(self) -> None:
        expect = self.doc.get("expect", {})
        if "steps" in expect and "stop_after" in expect:
            self.add(["expect", "stop_after"], "give either 'steps' or 'stop_after', not both", at_key=True)
        if "stop_after" in expect and not self._after_start(expect["stop_after"]):
            self.add(["expect", "stop_after"], self._not_after_start(expect["stop_after"]))
        seen: dict[str, int] = {}
        previous: str | None = None
        for i, step in enumerate(expect.get("steps", [])):
            if step in seen:
                self.add(["expect", "steps", i], f"step {step!r} is listed twice (first at [{seen[step]}])")
                continue
            seen[step] = i
            if not self._after_start(step):
                self.add(["expect", "steps", i], self._not_after_start(step))
            elif previous is not None and self.definition.index(step) < self.definition.index(previous):
                self.add(["expect", "steps", i], f"step {step!r} is out of the pipeline's order: it comes "
                         f"before {previous!r} (order: {' -> '.join(self.definition.names)})")
            previous = step if self._after_start(step) else previous

    def _after_start(self, step: str) -> bool:
        return self.definition.index(step) > self.definition.index(self.start)

    def _not_after_start(self, step: str) -> str:
        return (f"step {step!r} is not after the start state ({self.start}, done); "
                f"expected steps come from: {', '.join(self.definition.steps_after(self.start))}")

    def expected(self) -> list[str]:
        """The expected step list this document resolves to (defaults applied)."""
        return expected_steps(self.doc, self.definition)

    def step_keys(self) -> None:
        expected = self.expected()
        sections = (["expect", "retries"], ["expect", "latency"], ["timeouts", "steps"])
        for parts in sections:
            section = _dig(self.doc, parts) or {}
            for step in section:
                if step not in expected and not (step == "default" and parts[-1] == "latency"):
                    self.add(parts + [step], f"{step!r} is not one of this scenario's expected steps "
                             f"({', '.join(expected)})", at_key=True)

    def retry_ranges(self) -> None:
        for step, value in self.doc.get("expect", {}).get("retries", {}).items():
            if not isinstance(value, dict):
                continue
            if value.get("max", value["min"]) < value["min"]:
                self.add(["expect", "retries", step, "max"], f"max ({value['max']}) is below min ({value['min']})")
            for j, order in enumerate(value.get("variants", [])):
                if order > self.variant_count:
                    self.add(["expect", "retries", step, "variants", j], self._no_variant(order))

    def detections(self) -> None:
        for i, detect in enumerate(self.doc.get("expect", {}).get("detect", [])):
            if "step" in detect and detect["step"] not in [self.start] + self.expected():
                self.add(["expect", "detect", i, "step"], f"{detect['step']!r} is not one of this scenario's "
                         f"expected steps ({', '.join(self.expected())})")
            for j, order in enumerate(detect.get("variants", [])):
                if order > self.variant_count:
                    self.add(["expect", "detect", i, "variants", j], self._no_variant(order))

    def failures(self) -> None:
        expected = self.expected()
        for i, failure in enumerate(self.doc.get("expect", {}).get("failures", [])):
            if failure["step"] not in expected:
                self.add(["expect", "failures", i, "step"], f"{failure['step']!r} is not one of this "
                         f"scenario's expected steps ({', '.join(expected)})")
            targets = failure.get("variants", "all")
            if targets != "all" and self._is_job_step(failure["step"]):
                self.add(["expect", "failures", i, "variants"], f"{failure['step']} is a job-level step: it fails "
                         "on the job row, not on variants (leave out 'variants')", at_key=True)
            for j, order in enumerate(targets if isinstance(targets, list) else []):
                if order > self.variant_count:
                    self.add(["expect", "failures", i, "variants", j], self._no_variant(order))

    def impossible_failures(self) -> None:
        """Required failures that cannot all happen: a variant fails once, and a job row whose variant failed
        never reaches the job-level steps."""
        required: dict[int, str] = {}
        variant_failure = False
        for i, failure in enumerate(self.doc.get("expect", {}).get("failures", [])):
            if not failure.get("required", True):
                continue
            if self._is_job_step(failure["step"]):
                if variant_failure:
                    self.add(["expect", "failures", i, "step"], f"{failure['step']} is a job-level step: the job "
                             "row never reaches it when a variant is required to fail first")
                continue
            variant_failure = True
            targets = failure.get("variants", "all")
            for order in range(1, self.variant_count + 1) if targets == "all" else targets:
                if order in required:
                    self.add(["expect", "failures", i], f"variant #{order} is already required to fail at "
                             f"{required[order]}; a variant fails once (make one of them required: false)")
                    break
                required[order] = failure["step"]

    def _is_job_step(self, step: str) -> bool:
        return self.definition.has(step) and self.definition.level(step) == "job"

    def final_states(self) -> None:
        final = self.doc.get("expect", {}).get("final", {})
        allowed = [self.start] + self.expected()
        variant_allowed = [s for s in allowed if not self._is_job_step(s)]
        for key, reachable, who in (("variant", variant_allowed, "variants"), ("job", allowed, "job row")):
            if key in final and final[key]["step"] not in reachable:
                self.add(["expect", "final", key, "step"], f"{final[key]['step']!r} is not a state this "
                         f"scenario's {who} can reach ({', '.join(reachable)})")
        if self.expected() and all(self._is_job_step(s) for s in self.expected()):
            self.add(["expect", "steps"], f"the variants must walk at least one step after {self.start}; "
                     "job-level steps follow the variant steps")

    def latency(self) -> None:
        latency_problems(self.doc.get("expect", {}), self.add)

    def sql(self) -> None:
        self.problems.extend(sql_problems(self.doc.get("expect", {}), self.root, self.add))

    def fixtures(self) -> None:
        for i, fixture in enumerate(self.doc.get("fixtures", [])):
            for j, row in enumerate(fixture["rows"]):
                for column, value in row.items():
                    for message in self._placeholder_errors(value):
                        self.add(["fixtures", i, "rows", j, column], message)

    def seed_rows(self) -> None:
        """Each name is one of the definition's seed rows; an override's values are checked like fixtures'."""
        known = self.definition.seed_row_names
        for name, choice in self.doc.get("seed_rows", {}).items():
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f" (it declares: {', '.join(known) or 'none'})"
                self.add(["seed_rows", name], f"the pipeline definition declares no seed row {name!r}{hint}", True)
            elif isinstance(choice, dict):
                for column, value in choice["values"].items():
                    for message in self._placeholder_errors(value):
                        self.add(["seed_rows", name, "values", column], message)

    def _placeholder_errors(self, value: Any) -> Iterator[str]:
        if not isinstance(value, str):
            return
        for name in PLACEHOLDER.findall(value):
            match = PLACEHOLDER_NAMES.match(name)
            if match is None:
                yield (f"unknown placeholder ${{{name}}}; available: ${{job.id}}, ${{tenant.id}}, "
                       "${image.id}, ${variant.N.id}, ${scenario.ad_copy}")
            elif match.group(2) and int(match.group(2)) > self.variant_count:
                yield self._no_variant(int(match.group(2)))

    def reference_pipeline(self) -> None:
        config = self.doc.get("reference_pipeline")
        if config is not None:
            self.problems.extend(pipeline_problems(config, self.root, ["reference_pipeline"], self.definition))


def pipeline_problems(config: dict[str, Any], root: Located, prefix: list[str | int],
                      definition: Definition = DEFAULT) -> list[Problem]:
    """Cross-field checks of a schema-valid reference pipeline configuration."""
    problems = []

    def add(parts: list[str | int], message: str) -> None:
        mark = locate(root, prefix + parts)
        problems.append(Problem(mark.file, mark.line, mark.col, path_text(prefix + parts), message))

    for i, fault in enumerate(config.get("faults", [])):
        kind, step = fault["kind"], fault["step"]
        if step == definition.seed:
            add(["faults", i, "step"], f"{step} is seeded, never run; a fault cannot happen there")
        if "to" in fault and kind != "backwards":
            add(["faults", i, "to"], "'to' applies to kind 'backwards' only")
        if "times" in fault and kind != "fail_then_retry":
            add(["faults", i, "times"], "'times' applies to kind 'fail_then_retry' only")
        if kind == "backwards":
            target = fault.get("to") or definition.previous_step(step) or step
            if definition.index(target) >= definition.index(step) or target == definition.seed \
                    or (definition.level(step) == "variant" and definition.level(target) == "job"):
                add(["faults", i, "to" if "to" in fault else "step"],
                    f"'backwards' must return to a step run before {step!r} (got {target!r})")
        if kind == "duplicate_trigger" and step not in definition.job_names[:1]:
            add(["faults", i, "step"], f"'duplicate_trigger' starts the first job-level step "
                f"({', '.join(definition.job_names[:1]) or 'none here'}) from two paths, never {step!r}")
        if kind == "fail_then_retry" and fault.get("times", 1) > config.get("max_retries", 2):
            add(["faults", i, "times"], f"fails {fault['times']} time(s) but max_retries is "
                f"{config.get('max_retries', 2)}: it would end failed (use kind 'fail' for that)")
    return problems


def _reruns(definition: Definition, simulated: str) -> tuple[str, tuple[str, str]] | None:
    """A variant step whose retry sends the row back to where the simulated step must run again."""
    at = definition.index(simulated)
    for step in definition.variant_steps:
        target = step.retry_to
        if target is not None and (definition.index(target[0]) < at or target == (simulated, "queued")):
            return step.name, target
    return None


def expected_steps(doc: dict[str, Any], definition: Definition = DEFAULT) -> list[str]:
    """The expected steps with defaults: explicit `steps`, else every step after `start` (variant steps, then
    the job-level ones) up to `stop_after`."""
    expect = doc.get("expect", {})
    if "steps" in expect:
        return list(expect["steps"])
    following = list(definition.steps_after(doc.get("start", definition.seed_states[0])))
    stop = expect.get("stop_after")
    if stop in following:
        return following[: following.index(stop) + 1]
    return following


def resolve_image(root: Located, index: int) -> Path:
    """An `images` entry as a path, relative to the file that declared it."""
    node = root.value["images"][1].value[index]
    path = Path(node.value).expanduser()
    return path if path.is_absolute() else Path(node.mark.file).parent / path


def _dig(doc: dict[str, Any], parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc

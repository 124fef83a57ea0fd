"""Loading a scenario file: read, resolve `extends`, validate, check, build.

Every problem of a file is reported at once, each as `file:line:col: json.path: message`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner import resources
from runner.errors import Problem, ScenarioError
from runner.pipeline.config import PipelineConfig
from runner.pipeline import config as pipeline_config
from runner.definition import DEFAULT, Definition
from runner.scenario import bounds, build, definitions, expand, schema_errors, semantics, yamlsource
from runner.scenario.model import Scenario
from runner.scenario.pipelines import Definitions, InForce
from runner.scenario.yamlsource import Located, Mark

MAX_EXTENDS = 8


def load(path: str | Path, definition: Definition | InForce = DEFAULT, values: Mapping[str, str] | None = None,
         definitions: Definitions | None = None) -> Scenario:
    """The Scenario in `path`, checked against `definition`; raises ScenarioError listing every problem found.
    A file with a matrix of more than one instance is loaded with `load_instances`."""
    found = load_instances(path, definition, values, definitions)
    if len(found) != 1:
        raise ScenarioError([Problem(str(path), 1, 1, "$.matrix", f"the matrix makes {len(found)} scenarios; "
                                                                  "load them with load_instances")])
    return found[0]


def load_instances(path: str | Path, definition: Definition | InForce = DEFAULT,
                   values: Mapping[str, str] | None = None, definitions: Definitions | None = None) -> list[Scenario]:
    """Every scenario a file makes (one, or one per matrix combination), variables resolved from `values`
    (`--var`) and the environment; ScenarioError listing every problem of every instance. An instance naming its
    own `pipeline_file:` is read with that definition (from `definitions`, which reads each file once)."""
    display = str(path)
    root = _read_with_extends(Path(path), display, chain=())
    problems = expand.substitute(root, expand.variables(values))
    if problems:
        raise ScenarioError(problems)
    fallback = definition if isinstance(definition, InForce) else InForce(definition, _given(definition))
    definitions = definitions or Definitions(load_definition)
    loaded: list[Scenario] = []
    found: dict[str, Problem] = {}
    for label, tree in expand.instances(root):
        try:
            in_force = definitions.own(tree, fallback)
        except ScenarioError as exc:
            problems = exc.problems
        else:
            problems = _instance_problems(tree, in_force)
        for problem in problems:
            found.setdefault(str(problem), problem)
        if not problems:
            scenario = build.scenario(yamlsource.to_plain(tree), tree, Path(path), in_force.definition)
            loaded.append(dataclasses.replace(scenario, name=f"{scenario.name}[{label}]") if label else scenario)
    if found:
        raise ScenarioError(list(found.values()))
    return loaded


def _given(definition: Definition) -> str:
    return "" if definition is DEFAULT else "the definition given"


def _instance_problems(tree: Located, in_force: InForce) -> list[Problem]:
    """Schema problems, else semantic ones and bounds, of one instance against the definition in force."""
    doc, definition = yamlsource.to_plain(tree), in_force.definition
    problems = check_document(doc, tree, "scenario.schema.json", definition, in_force.hint())
    return problems or semantics.Checker(doc, tree, definition).run() + bounds.problems(doc, tree)


def load_pipeline_config(path: str | Path, definition: Definition = DEFAULT) -> PipelineConfig:
    """A reference pipeline configuration file (`ye-run pipeline --config`)."""
    root = yamlsource.read(Path(path), str(path))
    doc = yamlsource.to_plain(root)
    problems = check_document(doc, root, "pipeline.schema.json", definition)
    if not problems:
        problems = semantics.pipeline_problems(doc, root, [], definition) + bounds.problems(
            doc, root, "pipeline.schema.json")
    if problems:
        raise ScenarioError(problems)
    return pipeline_config.build(doc)


def check_document(doc: Any, root: Located, schema_name: str, definition: Definition = DEFAULT,
                   step_hint: str = "") -> list[Problem]:
    """Located schema problems of a document against one of the shipped schemas; `step_hint` ends the message
    of an unknown step (which definition is in force, how to choose another)."""
    validator = resources.validator(schema_name, definition)
    return schema_errors.translate(validator.iter_errors(doc), root, _resolver(schema_name, definition),
                                   definition.names, step_hint)


def _resolver(schema_name: str, definition: Definition):
    documents = [resources.schema(schema_name, definition)] + [
        resources.schema(n, definition) for n in ("scenario.schema.json", "pipeline.schema.json") if n != schema_name
    ]

    def resolve(ref: str) -> dict:
        if not ref.startswith("#/"):
            return resources.schema(ref, definition)
        for document in documents:
            node: Any = document
            for part in ref[2:].split("/"):
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict):
                return node
        return {}

    return resolve


def _read_with_extends(path: Path, display: str, chain: tuple[Path, ...]) -> Located:
    root = yamlsource.read(path, display)
    if not isinstance(root.value, dict) or "extends" not in root.value:
        return root
    key_mark, target = root.value["extends"]
    if not isinstance(target.value, str) or not target.value:
        raise yamlsource.problem(target.mark, "$.extends", "expected a file name (a string)")
    base_path = (path.parent / target.value).resolve()
    here = path.resolve()
    if base_path in chain + (here,):
        raise yamlsource.problem(target.mark, "$.extends", f"extends cycle: {target.value} already extends this file")
    if len(chain) >= MAX_EXTENDS:
        raise yamlsource.problem(target.mark, "$.extends", f"more than {MAX_EXTENDS} levels of extends")
    base_display = os.path.normpath(os.path.join(os.path.dirname(display), target.value))
    if not base_path.is_file():
        raise yamlsource.problem(target.mark, "$.extends", f"file not found: {base_display}")
    base = _read_with_extends(base_path, base_display, chain + (here,))
    if not isinstance(base.value, dict):
        raise yamlsource.problem(target.mark, "$.extends", f"{target.value} is not a scenario mapping")
    own = {k: v for k, v in root.value.items() if k != "extends"}
    return Located(_merge(base.value, own), root.mark)


def _merge(base: dict[str, tuple[Mark, Located]], own: dict[str, tuple[Mark, Located]]) -> dict:
    """Mappings merge key by key; anything else in `own` replaces what `base` had."""
    merged = dict(base)
    for key, (key_mark, node) in own.items():
        if key in base and isinstance(node.value, dict) and isinstance(base[key][1].value, dict):
            merged[key] = (key_mark, Located(_merge(base[key][1].value, node.value), node.mark))
        else:
            merged[key] = (key_mark, node)
    return merged


def load_definition(path: str | Path) -> Definition:
    """A pipeline definition file (`--pipeline-file`); ScenarioError listing every problem found."""
    display = str(path)
    root = yamlsource.read(Path(path), display)  # every reading problem is located there, first
    raw = yamlsource.read_bounded(Path(path), yamlsource.MAX_BYTES)
    doc = yamlsource.to_plain(root)
    problems = check_document(doc, root, "definition.schema.json")
    if not problems:
        problems = definitions.problems(doc, root)
    if problems:
        raise ScenarioError(problems)
    return definitions.build(doc, display, hashlib.sha256(raw).hexdigest(), root)

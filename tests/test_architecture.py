"""Imports point down the layers of ARCHITECTURE.md: a module never imports from a higher layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = [
    ("model", ["runner.errors", "runner.definition", "runner.durations", "runner.sqlsafety", "runner.trace",
               "runner.outcomes", "runner.stats", "runner.scenario.model", "runner.pipeline.config", "runner"]),
    ("resources", ["runner.resources"]),
    ("loading", ["runner.scenario"]),
    ("database", ["runner.db"]),
    ("pipeline", ["runner.pipeline"]),
    ("observe", ["runner.observe"]),
    ("engine", ["runner.engine"]),
    ("report", ["runner.report"]),
    ("watch", ["runner.watch"]),
    ("cli", ["runner.cli", "runner.__main__", "runner.pytest_plugin"]),
]


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best is not None, module
    return best


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted((ROOT / "runner").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out.append((name, path))
    return out


@pytest.mark.parametrize("name,path", modules(), ids=[m for m, _ in modules()])
def test_imports_point_down(name: str, path: Path):
    own = layer_of(name)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            known = {m for m, _ in modules()}  # `from runner.pipeline import config` imports runner.pipeline.config
            targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                       for a in node.names]
        for target in targets:
            if target.startswith("runner"):
                assert layer_of(target) <= own, f"{name} ({LAYERS[own][0]}) imports {target} " \
                                                f"({LAYERS[layer_of(target)][0]})"


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The runner modules `name` imports, at any depth of its code (a lazy import is still an import)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("runner"):
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                      for a in node.names}
    return (found & known) - {name}


def test_no_import_cycles():
    """Two modules that import each other cannot be understood, or changed, one at a time."""
    graph = {name: _imports(name, path, {m for m, _ in modules()}) for name, path in modules()}
    cycles = []

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(graph.get(node, ()))
        return False

    for name, targets in graph.items():
        cycles += [f"{name} <-> {target}" for target in targets if target.startswith(name + ".") is False
                   and reaches(target, name) and not name.startswith(target + ".")]
    assert cycles == []

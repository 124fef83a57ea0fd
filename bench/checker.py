"""The trace checker's CPU time for one variant walking a long pipeline.

A definition of N variant steps (built in Python: a definition file stops at 200) and one
variant writing (step, running), (step, done) for each step. Two figures per N: one walk of
the whole trace (`asserts.walk`), and the run's way of following it, one transition at a time
through `engine.tracker.Tracker`, as the observer delivers them. CPU time (process_time),
best of 3; nothing else runs.

    python bench/checker.py [--steps 50,500,2000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.db.registry import SeededJob, SeededVariant  # noqa: E402
from runner.definition import Definition, Step  # noqa: E402
from runner.engine.asserts import walk  # noqa: E402
from runner.engine.results import JobResult  # noqa: E402
from runner.engine.tracker import Tracker  # noqa: E402
from runner.scenario import loader  # noqa: E402
from runner.scenario.model import Scenario  # noqa: E402
from runner.trace import Transition, VariantTrace  # noqa: E402

NOW = datetime(2026, 11, 26, tzinfo=timezone.utc)


def pipeline(steps: int, directory: Path) -> tuple[Scenario, list[Transition]]:
    """A scenario expecting every one of `steps` steps, and the trace of a variant walking them all."""
    names = [f"s{i}" for i in range(steps)]
    definition = Definition(variant_steps=tuple(Step(n) for n in names), seed_states=(names[0],))
    path = directory / f"long{steps}.yaml"
    path.write_text(f"name: long{steps}\n", encoding="utf-8")
    scenario = loader.load(path, definition)
    states = [(names[0], "done")] + [(n, status) for n in names[1:] for status in ("running", "done")]
    return scenario, [Transition("v", "j", "v", s, st, NOW, NOW, float(i)) for i, (s, st) in enumerate(states)]


def follow(scenario: Scenario, transitions: list[Transition]) -> None:
    tracker = Tracker(scenario)
    tracker.add(JobResult(SeededJob(1, "j", "ye_bench_test", "a", (SeededVariant("v", 1),), ()), NOW, 0.0,
                          {"v": VariantTrace("v", 1)}))
    for t in transitions:
        tracker.apply([t])
    assert tracker.finished("j") and not tracker.new_failures("j")


def cpu(work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="50,500,2000", help="comma-separated step counts")
    args = parser.parse_args()
    print(f"{'steps':>6} {'transitions':>11} {'one walk':>10} {'followed':>10} {'per transition':>15}")
    with tempfile.TemporaryDirectory() as tmp:
        for steps in (int(n) for n in args.steps.split(",")):
            scenario, transitions = pipeline(steps, Path(tmp))
            once = cpu(lambda: walk(transitions, scenario.expect, 1, scenario.start, scenario.definition))
            followed = cpu(lambda: follow(scenario, transitions))
            print(f"{steps:>6} {len(transitions):>11} {once * 1000:>8.1f}ms {followed * 1000:>8.1f}ms "
                  f"{followed / len(transitions) * 1e6:>13.1f}us")


if __name__ == "__main__":
    main()

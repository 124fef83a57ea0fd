"""Every failure carries the place of the expectation or limit it broke: file, line, column and JSON path."""

from __future__ import annotations

from pathlib import Path

from runner.db.connect import Database
from runner.scenario.model import Origin
from tests.engine.helpers import run

TEXT = """name: origins
simulate_img_gen: true
timeouts: {step: 20s, stall: 20s, job: 60s}
reference_pipeline: {latency: {steps: {planner: 60ms}}}
expect:
  latency:
    overlay: {p95: 30s}
    planner: {max: 10ms}
  sql:
    - {name: fine, query: "select 1", equals: 1}
    - {name: wrong, query: "select count(*) from jobs_variants where job_id = :job_id", equals: 4}
  detect:
    - {kind: skipped_step, step: yolo_detect}
"""


def where(file: str, text: str, line_has: str, at: str) -> Origin:
    """The 1-based line and column of `at` on the first line of the file holding `line_has`."""
    lines = text.splitlines()
    number = next(i for i, line in enumerate(lines) if line_has in line)
    return Origin(file, number + 1, lines[number].index(at) + 1)


def test_a_failure_points_at_the_expectation_it_broke(db: Database, tmp_path: Path):
    outcome = run(db, tmp_path, TEXT)
    assert outcome.kinds() == {"latency_limit", "sql_check", "detection_missing"}
    file = outcome.run.scenario.source.file
    text = Path(file).read_text(encoding="utf-8")
    expected = {
        "latency_limit": (where(file, text, "planner: {max", "10ms"), "$.expect.latency.planner.max"),
        "sql_check": (where(file, text, "name: wrong", "{"), "$.expect.sql[1]"),
        "detection_missing": (where(file, text, "kind: skipped_step", "{"), "$.expect.detect[0]"),
    }
    for kind, (origin, path) in expected.items():
        failure = outcome.failure(kind)
        assert (failure.origin, failure.expectation) == (origin, path), kind
        assert failure.text().splitlines()[0].endswith(
            f" (broke {origin.file}:{origin.line}:{origin.col}: {path})"), failure.text()

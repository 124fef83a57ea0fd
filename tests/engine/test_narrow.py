"""--last-failed and --shard as the session narrows a selection with the run registry."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.db.connect import Database
from runner.engine.narrow import Narrowing, narrow
from runner.errors import InputError
from runner.scenario import discover, loader

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [loader.load(p) for p in discover.scenario_files([str(ROOT / "scenarios")])]


def record(database: Database, runs: list[tuple[str, str, str, float]]) -> None:
    """Registered runs: (scenario, outcome, when: 'yesterday' or 'today', seconds it took)."""
    with contextlib.closing(database.connect("ye-run tests")) as conn, conn.cursor() as cur:
        for number, (scenario, outcome, when, seconds) in enumerate(runs):
            start = ("date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '3 hours'"
                     if when == "yesterday" else "now() - interval '1 second'")
            cur.execute(f"INSERT INTO ye_run_runs (run_id, scenario, tenant_id, started_at, finished_at, outcome) "
                        f"VALUES (%s, %s, 'ye_t_test', {start} + make_interval(mins => %s), "
                        f"{start} + make_interval(mins => %s, secs => %s), %s)",
                        (f"r{number}", scenario, number, number, seconds, outcome))
        conn.commit()


def test_a_shard_is_dealt_by_the_durations_of_runs_before_today(database_with: Callable[..., Database]):
    database = database_with()
    longest = SHIPPED[-1].name
    record(database, [(s.name, "passed", "yesterday", 1.0) for s in SHIPPED] +
           [(longest, "failed", "yesterday", 100.0), (longest, "passed", "yesterday", 100.0),
            (SHIPPED[0].name, "passed", "today", 5000.0)])  # tonight's runs do not move the split
    first = narrow(SHIPPED, database, Narrowing(shard=(1, 3)))
    assert [s.name for s in first.scenarios] == [longest]
    assert first.shard is not None and first.shard.balanced_by == "durations (the run registry)"
    assert first.shard.selection == tuple(s.name for s in SHIPPED)
    others = [s.name for k in (2, 3) for s in narrow(SHIPPED, database, Narrowing(shard=(k, 3))).scenarios]
    assert sorted(others + [longest]) == sorted(s.name for s in SHIPPED)
    assert f"--shard 1/3: 1 of {len(SHIPPED)} scenario(s), split by durations (the run registry)" in first.notes


def test_with_no_past_run_a_shard_is_dealt_by_count(database_with: Callable[..., Database]):
    fresh = narrow(SHIPPED, database_with(), Narrowing(shard=(1, 3)))
    assert fresh.shard is not None and fresh.shard.balanced_by == "count"
    assert len(fresh.scenarios) == 4 and "no past durations" in fresh.notes[0]


def test_last_failed_runs_the_scenarios_whose_last_run_failed(database_with: Callable[..., Database]):
    database = database_with()
    fixed, broken, errored = SHIPPED[0].name, SHIPPED[1].name, SHIPPED[2].name
    record(database, [(fixed, "failed", "yesterday", 1.0), (fixed, "passed", "today", 1.0),
                      (broken, "passed", "yesterday", 1.0), (broken, "failed", "today", 1.0),
                      (errored, "error", "today", 1.0)])
    kept = narrow(SHIPPED, database, Narrowing(last_failed=True))
    assert [s.name for s in kept.scenarios] == [broken, errored]
    from_report = narrow(SHIPPED, None, Narrowing(last_failed=True, failed=frozenset({fixed})))
    assert [s.name for s in from_report.scenarios] == [fixed]
    nothing = narrow(SHIPPED, None, Narrowing(last_failed=True, failed=frozenset()))
    assert nothing.scenarios == [] and "nothing to run" in nothing.notes[0]


def test_last_failed_without_a_registry_says_how_to_get_one(database_with: Callable[..., Database]):
    bare = database_with(install=False)
    with pytest.raises(InputError, match="--last-failed-from REPORT.json"):
        narrow(SHIPPED, bare, Narrowing(last_failed=True))
    assert narrow(SHIPPED, bare, Narrowing(shard=(2, 3))).shard.balanced_by == "count"  # type: ignore[union-attr]

"""Job-level checks against a system under test with injected faults (database triggers)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import psycopg2.errors
import pytest

from runner.engine.checks import CheckSession
from runner.errors import ScenarioError
from tests.db.helpers import count, load
from tests.engine.helpers import run

OK = "simulate_img_gen: true\ntimeouts: {step: 30s, stall: 30s, job: 60s}\n"


def test_unknown_step_written_by_the_pipeline(database_with, tmp_path: Path):
    database = database_with("""
        CREATE FUNCTION typo() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.current_step = 'planner' AND NEW.creation_order = 2 THEN NEW.current_step := 'planer'; END IF;
        RETURN NEW; END $$;
        CREATE TRIGGER typo BEFORE UPDATE ON jobs_variants FOR EACH ROW EXECUTE FUNCTION typo();""")
    outcome = run(database, tmp_path, "name: typo\nsimulate_img_gen: true\ntimeouts: {step: 1s, stall: 30s, job: 60s}\n")
    assert outcome.kinds() == {"unknown_step", "step_timeout"}
    assert outcome.failure("unknown_step").message.endswith("› variant #2 (" + outcome.result.jobs[0].seeded.variant(
        2).id + ") › planer: moved to an unknown step 'planer'")


def test_job_row_that_never_completes(database_with, tmp_path: Path):
    database = database_with("ALTER TABLE jobs_variants DISABLE TRIGGER job_completion")
    outcome = run(database, tmp_path, f"name: stuck-job\n{OK}", job_settle=0.3)
    assert outcome.kinds() == {"job_final_state"}
    assert outcome.failure("job_final_state").message.endswith(
        "job row ended (user_img_input, done); expected (instagram_feed_gen, done)")


def test_extra_variant_and_lost_asset_are_caught(database_with, tmp_path: Path):
    database = database_with("""
        CREATE FUNCTION lose_asset() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.creation_order = 3 THEN NEW.img_asset_id := NULL; END IF; RETURN NEW; END $$;
        CREATE TRIGGER lose_asset BEFORE INSERT ON jobs_variants FOR EACH ROW EXECUTE FUNCTION lose_asset();
        CREATE FUNCTION extra_variant() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO jobs_variants (job_id, img_asset_id, creation_order, status, current_step)
              VALUES (NEW.job_id, NEW.img_asset_id, 99, 'done', 'iou_eval'); RETURN NEW; END $$;
        CREATE TRIGGER extra_variant AFTER INSERT ON job_inputs FOR EACH ROW EXECUTE FUNCTION extra_variant();""")
    outcome = run(database, tmp_path, f"name: integrity\n{OK}")
    assert {"variant_count", "shared_asset"} <= outcome.kinds()
    assert outcome.failure("variant_count").message.endswith("has 4 variant row(s); expected 3")
    assert "1 variant(s) without one" in outcome.failure("shared_asset").message


def test_sql_checks_pass_fail_and_cannot_write(db, tmp_path: Path):
    sneaky = ("delete from variant_evaluations where job_variants_id in "
              "(select job_variants_id from jobs_variants where job_id = :job_id)")
    text = f"""name: sql
{OK}expect:
  sql:
    - {{name: right, query: "select count(*) from jobs_variants where job_id = :job_id", equals: 3}}
    - {{name: wrong value, query: "select count(*) from jobs_variants where job_id = :job_id", equals: 4}}
    - {{name: wrong rows, query: "select 1 from jobs where tenant_id = :tenant_id and job_id = :job_id", rows: 2}}
    - {{name: literal colon, query: "select ':job_id' || '%'", equals: ":job_id%"}}
"""
    outcome = run(db, tmp_path, text)
    messages = sorted(f.message.split(": ", 1)[1] for f in outcome.result.all_failures)
    assert messages == [
        "sql check 'wrong rows': expected 2 row(s), got 1",
        "sql check 'wrong value': expected 4, got 3",
    ]
    job = outcome.result.jobs[0]
    with pytest.raises(ScenarioError, match="found DELETE"):  # a write is refused when the file is read
        load(tmp_path, f"name: sneaky\nexpect: {{sql: [{{name: sneaky write, query: '{sneaky}', rows: 0}}]}}\n")
    session = CheckSession(db)  # and, past validation, the checks' own session cannot write
    try:
        with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction, match="cannot execute DELETE"):
            session.fetch(sneaky.replace(":job_id", f"'{job.job_id}'"))
    finally:
        session.close()
    with contextlib.closing(db.connect()) as conn:
        assert count(conn, "select count(*) from variant_evaluations where job_variants_id = any(%s::uuid[])",
                     ([v.id for v in job.seeded.variants],)) == 12


def test_latency_limits(db, tmp_path: Path):
    text = (f"name: slow-planner\n{OK}reference_pipeline: {{latency: {{steps: {{planner: 60ms}}}}}}\n"
            "expect: {latency: {planner: {max: 10ms}, overlay: {p95: 30s}}}\n")
    outcome = run(db, tmp_path, text)
    assert outcome.kinds() == {"latency_limit"}
    failure = outcome.failure("latency_limit")
    assert failure.message.startswith("slow-planner › planner: max latency") and "over the limit 10ms" in failure.message
    assert failure.spent >= 0.06 and outcome.result.latency["planner"].n == 3


def test_sql_checks_test_the_value_and_show_it(db, tmp_path: Path):
    """A comparison, a range, a tolerance and a pattern each say what they wanted and the value they got; a
    comparison written in SQL says how to see its value."""
    variants = "select count(*) from jobs_variants where job_id = :job_id"
    step = "select current_step from jobs where job_id = :job_id"
    text = f"""name: values
{OK}expect:
  sql:
    - {{name: at least, query: "{variants}", at_least: 3}}
    - {{name: too few, query: "{variants}", at_least: 4}}
    - {{name: in range, query: "{variants}", between: [1, 3]}}
    - {{name: below, query: "{variants}", less_than: 3}}
    - {{name: close, query: "select 3.05::numeric", approx: {{value: 3, tolerance: 2%}}}}
    - {{name: not close, query: "select 3.05::numeric", approx: {{value: 3, tolerance: 0.01}}}}
    - {{name: last step, query: "{step}", matches: "^instagram_"}}
    - {{name: other step, query: "{step}", matches: "^iou"}}
    - {{name: in sql, query: "select count(*) > 3 from jobs_variants where job_id = :job_id", equals: true}}
    - {{name: two rows, query: "select 1 union all select 2", at_most: 5}}
"""
    outcome = run(db, tmp_path, text)
    found = {f.message.split("sql check ", 1)[1]: f for f in outcome.result.all_failures}
    assert sorted(found) == [
        "'below': expected < 3, got 3",
        "'in sql': expected true, got false",
        "'not close': expected 3 ± 0.01, got 3.05",
        "'other step': expected matching '^iou', got 'instagram_feed_gen'",
        "'too few': expected >= 4, got 3",
        "'two rows': expected one row with a value <= 5, got 2 rows",
    ]
    assert "test it with at_least, at_most" in found["'in sql': expected true, got false"].detail
    assert found["'too few': expected >= 4, got 3"].expectation == "$.expect.sql[1]"


def test_latency_default_p99_and_jobs_end_to_end(db, tmp_path: Path):
    """`default` holds for every step a step's own entry does not replace; p99 is a limit like the others; a job's
    end-to-end latency has limits of its own."""
    text = (f"name: slow\n{OK}reference_pipeline: {{latency: {{steps: {{planner: 300ms}}}}}}\n"
            "expect: {latency: {default: {p99: 250ms}, overlay: {p99: 30s}},\n"
            "         job_latency: {max: 250ms}}\n")
    outcome = run(db, tmp_path, text)
    limits = {f.step or "job": f for f in outcome.result.all_failures if f.kind == "latency_limit"}
    assert "planner" in limits and "overlay" not in limits
    assert limits["planner"].expectation == "$.expect.latency.default.p99"
    assert limits["planner"].message.startswith("slow › planner: p99 latency")
    assert limits["job"].expectation == "$.expect.job_latency.max"
    assert limits["job"].message.startswith("slow › job end to end: max latency")
    assert limits["job"].message.endswith("is over the limit 250ms (n=1)")
    assert outcome.result.job_latency.n == 1 and outcome.result.job_latency.max >= 0.3
    assert outcome.result.plan["latency_limits"]["overlay"] == {"p99": 30.0}
    assert outcome.result.plan["latency_limits"]["planner"] == {"p99": 0.25}
    assert outcome.result.plan["job_latency_limits"] == {"max": 0.25}

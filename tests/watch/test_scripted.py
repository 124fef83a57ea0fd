"""Watch on jobs an application writes step by step (plain SQL): the violations no reference fault makes."""

from __future__ import annotations

import contextlib

import pytest

from runner.definition import DEFAULT
from runner.outcomes import FailureKind
from tests.conftest import new_tenant
from tests.watch.app import App, Watching

STEPS = [s for s in DEFAULT.variant_names[1:]]
WALK = [(step, status) for step in STEPS for status in ("running", "done")]
JOB_STEPS = [("ad_copy_gen_kor", "done"), ("instagram_feed_gen", "done")]


@pytest.fixture
def stack():
    with contextlib.ExitStack() as s:
        yield s


@pytest.fixture
def setup(database_with, stack):
    database = database_with()
    return database, App(database, new_tenant(), stack)


def test_a_healthy_job_completes_and_each_broken_one_is_reported_at_its_row_and_step(setup, stack):
    database, app = setup
    watching = Watching(database, stack, settle=0.5)
    healthy, unknown_step, unknown_status, early, behind = (app.create_job() for _ in range(5))
    app.move(healthy, WALK)
    app.move_job(healthy, JOB_STEPS)
    app.move(unknown_step, WALK[:4] + [("vlm_analyse", "running")], variants=(2,))
    app.move(unknown_status, WALK[:2] + [("vlm_analyze", "in_progress")], variants=(1,))
    app.move(early, WALK[:-2])
    app.move(early, WALK[-2:], variants=(1,))
    app.move_job(early, [("ad_copy_gen_kor", "done")])  # variant #2 is still at readability_eval
    app.move(behind, WALK[:-1])
    with app.conn.cursor() as cur:  # the aggregate trigger's race: the last variant's completion is not seen
        cur.execute("ALTER TABLE jobs_variants DISABLE TRIGGER job_completion")
        cur.execute("UPDATE jobs_variants SET status = 'done' WHERE job_id = %s", (behind.job_id,))
        cur.execute("ALTER TABLE jobs_variants ENABLE TRIGGER job_completion")
    app.conn.commit()
    watching.until(watching.judged([healthy.job_id, unknown_step.job_id, unknown_status.job_id, early.job_id,
                                     behind.job_id]))
    verdicts = watching.by_job()
    assert verdicts[healthy.job_id].outcome == "completed"
    assert verdicts[healthy.job_id].violations == []
    found = {job: [(str(f.kind), f.step, f.creation_order) for f in verdicts[job].violations]
             for job in (unknown_step.job_id, unknown_status.job_id, early.job_id, behind.job_id)}
    assert found[unknown_step.job_id] == [(FailureKind.UNKNOWN_STEP, "vlm_analyse", 2)]
    assert found[unknown_status.job_id] == [(FailureKind.UNKNOWN_STATUS, "vlm_analyze", 1)]
    assert found[early.job_id][0][:2] == (FailureKind.OUT_OF_ORDER, "ad_copy_gen_kor")
    assert found[behind.job_id] == [(FailureKind.JOB_FINAL_STATE, None, None)]
    assert "left behind its variants" in verdicts[behind.job_id].violations[0].message
    diff = verdicts[unknown_step.job_id].violations[0].detail
    assert "expected (-) vs observed (+)" in diff and "+ vlm_analyse running" in diff
    assert verdicts[unknown_step.job_id].broke == ["built-in: $.variant_steps"]


def test_a_job_level_step_run_again_after_the_job_ended_is_reported_then(setup, stack):
    """The deployment's double trigger: the second run of a job-level step can land after the job's end state, when
    the job has been judged completed and forgotten. It is judged again, violated, once; its report replaces the
    earlier verdict; a job left alone after its end stays completed."""
    database, app = setup
    watching = Watching(database, stack, settle=0.5)
    twice, alone, variant_again = (app.create_job() for _ in range(3))
    for job in (twice, alone, variant_again):
        app.move(job, WALK)
        app.move_job(job, JOB_STEPS)
    watching.until(watching.judged([twice.job_id, alone.job_id, variant_again.job_id]))
    assert {v.outcome for v in watching.verdicts} == {"completed"}
    app.move_job(twice, [("ad_copy_gen_kor", "done")])  # the second trigger's run, after the end
    app.move(variant_again, [("iou_eval", "running")], variants=(1,))
    watching.until(lambda verdicts: sum(v.outcome == "violated" for v in verdicts) == 2)
    again = {v.job_id: v for v in watching.verdicts if v.outcome == "violated"}
    assert set(again) == {twice.job_id, variant_again.job_id}
    doubled = again[twice.job_id]
    assert doubled.after_end == "completed"
    assert [(str(f.kind), f.step) for f in doubled.violations] == [(FailureKind.DUPLICATE_TERMINAL, "ad_copy_gen_kor")]
    assert "after the job had ended" in doubled.violations[0].message
    assert [str(f.kind) for f in again[variant_again.job_id].violations] == [FailureKind.BACKWARDS]
    app.move_job(twice, [("instagram_feed_gen", "done")])  # reported once: later writes are not new verdicts
    totals = watching.stop()
    assert totals.outcomes["completed"] == 1 and totals.outcomes["violated"] == 2
    assert sum(v.job_id == twice.job_id and v.outcome == "violated" for v in watching.verdicts) == 1

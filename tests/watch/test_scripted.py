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

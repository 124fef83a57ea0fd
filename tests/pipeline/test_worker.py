"""The reference pipeline on a real database: every fault kind yields its exact (step, status) trace."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from runner.db.connect import Database
from runner.pipeline.host import PipelineHost
from runner.pipeline.worker import Worker
from tests.pipeline.rig import DONE, Rig, full_trace

FULL = full_trace()


@pytest.fixture
def stack():
    with contextlib.ExitStack() as s:
        yield s


def run_worker(rig: Rig, stack: contextlib.ExitStack, **config) -> Worker:
    worker = Worker(rig.database, rig.config(**config), rig.scope)
    worker.start()
    stack.callback(worker.stop)
    return worker


def test_normal_run_walks_every_step_and_the_trigger_completes_the_job(db: Database, tmp_path: Path, stack):
    rig = Rig(db, tmp_path, stack, variants=3)
    worker = run_worker(rig, stack, slots=2)
    rig.img_gen()
    rig.job_reaches(DONE)
    assert rig.traces() == {1: FULL, 2: FULL, 3: FULL}
    job_trace = rig.job_trace()
    assert job_trace[0] == ("user_img_input", "done")
    assert job_trace[-3:] == [("iou_eval", "done"), ("ad_copy_gen_kor", "done"), ("instagram_feed_gen", "done")]
    # The slot thread counts a variant just after its commit, which is what job_reaches saw.
    rig.wait_until(lambda: worker.stats.completed == {v.id for v in rig.jobs[0].variants})
    evaluations = rig_rows(rig, "SELECT count(*) FROM variant_evaluations WHERE job_variants_id = ANY(%s::uuid[])",
                           ([v.id for v in rig.jobs[0].variants],))
    assert evaluations == [(12,)]


def test_fail_ends_at_failed_and_fails_the_job(db: Database, tmp_path: Path, stack):
    rig = Rig(db, tmp_path, stack, variants=3)
    run_worker(rig, stack, faults=[{"kind": "fail", "step": "ocr_eval", "variants": [2]}])
    rig.img_gen()
    rig.wait_until(lambda: all(t[-1] == ("iou_eval", "done") for o, t in rig.traces().items() if o != 2)
                   and rig.traces()[2][-1] == ("ocr_eval", "failed"))
    traces = rig.traces()
    assert traces[2] == full_trace(until="ocr_eval")[:-1] + [("ocr_eval", "failed")]
    assert traces[1] == traces[3] == FULL
    assert rig.job_state() == ("ocr_eval", "failed")


def test_fail_then_retry_requeues_with_retry_count(db: Database, tmp_path: Path, stack):
    rig = Rig(db, tmp_path, stack, variants=2)
    run_worker(rig, stack, faults=[{"kind": "fail_then_retry", "step": "vlm_judge", "variants": [1], "times": 2}])
    rig.img_gen()
    rig.job_reaches(DONE)
    head = full_trace(until="overlay")
    tail = full_trace(start="vlm_judge")[1:]
    retry = [("vlm_judge", "running"), ("vlm_judge", "failed"), ("vlm_judge", "queued")] * 2
    assert rig.traces()[1] == head + retry + [("vlm_judge", "running"), ("vlm_judge", "done")] + tail
    assert rig.traces()[2] == FULL
    assert rig_rows(rig, "SELECT retry_count FROM jobs_variants WHERE job_variants_id = %s",
                    (rig.jobs[0].variant(1).id,)) == [(2,)]


def test_overlay_retry_returns_to_planner_done(db: Database, tmp_path: Path, stack):
    rig = Rig(db, tmp_path, stack, variants=1)
    run_worker(rig, stack, faults=[{"kind": "fail_then_retry", "step": "overlay"}])
    rig.img_gen()
    rig.job_reaches(DONE)
    head = full_trace(until="planner")
    expected = head + [("overlay", "running"), ("overlay", "failed"), ("planner", "done"),
                       ("overlay", "running"), ("overlay", "done")] + full_trace(start="overlay")[1:]
    assert rig.traces()[1] == expected


def test_hang_stays_running(db: Database, tmp_path: Path, stack):
    rig = Rig(db, tmp_path, stack, variants=2)
    worker = run_worker(rig, stack, faults=[{"kind": "hang", "step": "planner", "variants": [1]}])
    rig.img_gen()
    rig.wait_until(lambda: rig.traces()[2] == FULL and rig.traces()[1][-1] == ("planner", "running"))
    rig.wait_until(lambda: worker._queue.empty() and not worker._in_flight)
    assert rig.traces()[1] == full_trace(until="planner")[:-1]
    assert rig.job_state()[0] != "iou_eval"  # the job never completes while a variant hangs


def test_skip_never_visits_the_step(db: Database, tmp_path: Path, stack):
    rig = Rig(db, tmp_path, stack, variants=2)
    run_worker(rig, stack, faults=[{"kind": "skip", "step": "yolo_detect", "variants": [2]}])
    rig.img_gen()
    rig.job_reaches(DONE)
    assert rig.traces()[2] == [s for s in FULL if s[0] != "yolo_detect"]
    assert rig.traces()[1] == FULL


def test_backwards_returns_to_an_earlier_step_once(db: Database, tmp_path: Path, stack):
    rig = Rig(db, tmp_path, stack, variants=1)
    run_worker(rig, stack, faults=[{"kind": "backwards", "step": "overlay", "to": "yolo_detect"}])
    rig.img_gen()
    rig.job_reaches(DONE)
    head = full_trace(until="overlay")
    again = [("yolo_detect", "running"), ("yolo_detect", "done"), ("planner", "running"), ("planner", "done"),
             ("overlay", "running"), ("overlay", "done")]
    assert rig.traces()[1] == head + again + full_trace(start="overlay")[1:]


def test_duplicate_writes_the_done_state_twice(db: Database, tmp_path: Path, stack):
    rig = Rig(db, tmp_path, stack, variants=1)
    run_worker(rig, stack, faults=[{"kind": "duplicate", "step": "planner"}])
    rig.img_gen()
    rig.job_reaches(DONE)
    head = full_trace(until="planner")
    assert rig.traces()[1] == head + [("planner", "done")] + full_trace(start="planner")[1:]


def test_stall_notify_is_moved_on_by_the_sweep(db: Database, tmp_path: Path, stack):
    rig = Rig(db, tmp_path, stack, variants=1)
    worker = run_worker(rig, stack, sweep="300ms",
                        faults=[{"kind": "stall_notify", "step": "yolo_detect"}])
    rig.img_gen()
    rig.job_reaches(DONE)
    assert rig.traces()[1] == FULL
    assert worker._ignore == set()  # the notification was received and deliberately dropped


def test_crash_then_restart_continues(db: Database, tmp_path: Path, stack):
    rig = Rig(db, tmp_path, stack, variants=1)
    config = rig.config(faults=[{"kind": "crash", "step": "planner"}])
    first = Worker(rig.database, config, rig.scope)
    first.start()
    stack.callback(first.stop)
    rig.img_gen()
    assert first.wait(60) and first.crash is not None
    first.stop()
    crashed = rig.traces()[1]
    assert crashed == full_trace(until="planner")[:-1]
    second = Worker(rig.database, config, rig.scope)  # a new worker knows nothing of the first
    second.start()
    stack.callback(second.stop)
    rig.job_reaches(DONE)
    head = full_trace(until="planner")[:-1]
    assert rig.traces()[1] == head + [("planner", "running"), ("planner", "done")] + full_trace(start="planner")[1:]


def test_host_restarts_a_crashed_worker(db: Database, tmp_path: Path, stack):
    rig = Rig(db, tmp_path, stack, variants=3)
    host = PipelineHost(rig.database, rig.config(faults=[{"kind": "crash", "step": "overlay"}]), rig.scope)
    host.start()
    stack.callback(host.stop)
    rig.img_gen()
    rig.job_reaches(DONE)
    assert 1 <= host.restarts <= 3
    for trace in rig.traces().values():
        assert trace[-1] == ("iou_eval", "done")
        assert trace.count(("overlay", "done")) == 1


def test_ye_part_runs_img_gen(db: Database, tmp_path: Path, stack):
    rig = Rig(db, tmp_path, stack, variants=2)
    run_worker(rig, stack, with_ye=True)
    rig.job_reaches(DONE)
    assert rig.traces() == {1: FULL, 2: FULL}


def test_resume_leaves_img_gen_to_the_ye_part(db: Database, tmp_path: Path, stack):
    """A worker without the YE part resumes what a crashed worker left, never an img_gen under way elsewhere."""
    rig = Rig(db, tmp_path, stack, variants=2)
    first, second = rig.jobs[0].variants
    for variant, states in ((first, ["img_gen running"]), (second, ["img_gen running", "img_gen done",
                                                                    "vlm_analyze running"])):
        for state in states:
            with rig.conn.cursor() as cur:
                cur.execute("UPDATE jobs_variants SET current_step = %s, status = %s WHERE job_variants_id = %s",
                            (*state.split(), variant.id))
            rig.conn.commit()
    run_worker(rig, stack)
    rig.wait_until(lambda: rig.trace(second.id)[-1] == ("iou_eval", "done"))  # the resume has run
    assert rig.trace(first.id) == FULL[:2]
    with rig.conn.cursor() as cur:
        cur.execute("UPDATE jobs_variants SET status = 'done' WHERE job_variants_id = %s", (first.id,))
    rig.conn.commit()
    rig.job_reaches(DONE)
    assert rig.traces() == {1: FULL, 2: FULL[:4] + [("vlm_analyze", "running")] + FULL[4:]}


def test_yh_only_start_is_found_by_the_sweep(db: Database, tmp_path: Path, stack):
    rig = Rig(db, tmp_path, stack, variants=2, start="img_gen")
    run_worker(rig, stack)
    rig.job_reaches(DONE)
    assert rig.traces() == {1: full_trace("img_gen"), 2: full_trace("img_gen")}


def test_stop_after_leaves_variants_at_that_step(db: Database, tmp_path: Path, stack):
    rig = Rig(db, tmp_path, stack, variants=2)
    run_worker(rig, stack, stop_after="planner")
    rig.img_gen()
    rig.job_reaches(("planner", "done"))
    assert rig.traces() == {1: full_trace(until="planner"), 2: full_trace(until="planner")}


def test_job_and_variant_targets(db: Database, tmp_path: Path, stack):
    rig = Rig(db, tmp_path, stack, variants=2, jobs=2)
    run_worker(rig, stack, faults=[{"kind": "fail", "step": "planner", "jobs": [2], "variants": [1]}])
    first, second = rig.jobs
    rig.img_gen(first)
    rig.job_reaches(DONE, first)
    rig.img_gen(second)
    rig.wait_until(lambda: rig.job_state(second) == ("planner", "failed")
                   and rig.traces(second)[2][-1] == ("iou_eval", "done"))
    assert rig.traces(second)[1][-1] == ("planner", "failed")
    assert rig.traces(first) == {1: FULL, 2: FULL}


def test_relistens_after_losing_its_connection(db: Database, tmp_path: Path, stack):
    rig = Rig(db, tmp_path, stack, variants=2)
    worker = run_worker(rig, stack, latency={"default": "20ms"})
    rig.img_gen()
    rig.wait_until(lambda: any(("planner", "done") in t for t in rig.traces().values()))
    with contextlib.closing(db.connect(autocommit=True)) as admin, admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'ye-run pipeline listen' AND datname = current_database()")
        assert cur.rowcount >= 1
    rig.job_reaches(DONE)
    assert rig.traces() == {1: FULL, 2: FULL}
    assert worker.reconnects >= 1


def test_latency_is_reproducible_per_seed():
    from runner.pipeline import config as pipeline_config, faults
    from runner.pipeline.scope import VariantInfo

    config = pipeline_config.build({"seed": 3, "latency": {"default": {"lognormal": {"median": "100ms"}}}})
    info = VariantInfo("v", "j", 2, 1)
    draws = [faults.latency(config, info, "planner", 0) for _ in range(3)]
    assert len(set(draws)) == 1 and draws[0] > 0
    other = pipeline_config.build({"seed": 4, "latency": {"default": {"lognormal": {"median": "100ms"}}}})
    assert faults.latency(other, info, "planner", 0) != draws[0]


def rig_rows(rig: Rig, query: str, params: tuple) -> list[tuple]:
    from tests.db.helpers import rows

    return rows(rig.conn, query, params)


def test_stop_ends_every_thread_and_twice_at_once_is_safe(db: Database, tmp_path: Path, stack):
    """stop() wakes the dispatcher (its pipe) and the slots (a None each) instead of waiting for their timeouts;
    the host and its supervisor may both call it at once: the pipe is closed exactly once."""
    import threading

    rig = Rig(db, tmp_path, stack, variants=1)
    worker = run_worker(rig, stack, slots=3)
    rig.img_gen()
    rig.job_reaches(DONE)
    assert worker._wake is not None
    errors: list[BaseException] = []

    def stop() -> None:
        try:
            worker.stop()
        except BaseException as exc:  # an fd closed twice is EBADF here
            errors.append(exc)

    stoppers = [threading.Thread(target=stop) for _ in range(2)]
    for thread in stoppers:
        thread.start()
    for thread in stoppers:
        thread.join(30)
    assert errors == []
    assert not any(t.is_alive() for t in worker._threads)
    assert worker._wake is None
    worker.stop()  # again, after: nothing left to do

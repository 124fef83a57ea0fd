"""A server restart under a live watch: it reconnects, and every job created is judged once, with the right outcome.

The server is an embedded one of this module's own (the test stops and starts it). The reference pipeline drives
jobs an application creates: some judged before the stop, some in flight when the server stops, some created the
moment it is back (before the watch has reconnected), some after. With the history table nothing can be lost (the
cursor and its gaps survive the outage). With LISTEN alone, what happened during the outage is seen only as where it
led (a gap, not judged as a skip): no job is lost or made up, but a fault inside the outage could go unseen, so the
faults here are in jobs judged before the stop and created after the reconnect.
"""

from __future__ import annotations

import contextlib
from collections import Counter

import pytest

from runner.pipeline import config as pipeline_config
from runner.pipeline.scope import Scope
from runner.pipeline.worker import Worker
from tests.conftest import new_tenant, own_database
from tests.engine.test_restart import control
from tests.watch.app import App, Watching
from tests.watch.test_listen import WITHOUT_HISTORY, until

VIOLATED = {2: "yolo_detect", 11: "yolo_detect"}
"""Job ordinals (in the pipeline's order) given the `skip` fault: judged violated (skipped_step) at that step."""
FAILED = {3, 12}
"""Job ordinals given the `fail` fault at ocr_eval (no retry; the watch allows none): judged failed."""


@pytest.fixture
def stack():
    with contextlib.ExitStack() as s:
        yield s


def moved(app: App, jobs) -> bool:
    """Every variant of these jobs has left its first state (the pipeline is working on them)."""
    rows = app.sql("SELECT count(*) FROM jobs_variants WHERE job_id = ANY(%s::uuid[]) "
                   "AND current_step <> 'user_img_input'", ([j.job_id for j in jobs],))
    return rows[0][0] == sum(len(j.variants) for j in jobs)


def reconnected(watching: Watching) -> bool:
    assert watching.error is None, watching.error
    return watching.watch.source.reconnects >= 1


@pytest.mark.parametrize("source", ["history", "listen"])
def test_a_restart_mid_watch_loses_no_job_and_doubles_none(restartable, stack, source):
    server, handle = restartable
    database = server if source == "history" else stack.enter_context(own_database(server, WITHOUT_HISTORY))
    tenant = new_tenant()
    faults = [{"kind": "skip", "step": step, "variants": [1], "jobs": [ordinal]} for ordinal, step in VIOLATED.items()]
    faults += [{"kind": "fail", "step": "ocr_eval", "variants": [1], "jobs": [ordinal]} for ordinal in FAILED]
    worker = Worker(database, pipeline_config.build({"sweep": "200ms", "ye_poll": "50ms", "with_ye": True,
                                                     "slots": 4, "latency": {"default": "60ms"}, "faults": faults}),
                    Scope(tenant=tenant))
    worker.start()
    stack.callback(worker.stop)
    watching = Watching(database, stack, settle=1.0, max_retries=0, source=source)
    app = App(database, tenant, stack)

    before = [app.create_job() for _ in range(3)]
    watching.until(watching.judged(j.job_id for j in before))
    in_flight = [app.create_job() for _ in range(4)]
    until(lambda: moved(app, in_flight), "the jobs are in flight")
    unfinished = app.sql("SELECT count(*) FROM jobs WHERE job_id = ANY(%s::uuid[]) AND current_step <> %s",
                         ([j.job_id for j in in_flight], "instagram_feed_gen"))[0][0]
    control(handle, "stop")
    handle.ensure_postgres_running()
    app = App(database, tenant, stack)  # the old connection went with the server
    edge = [app.create_job() for _ in range(2)]  # while the watch (and the pipeline) are still reconnecting
    until(lambda: reconnected(watching), "the watch reconnected")
    watching.until(watching.judged(j.job_id for j in in_flight + edge))
    after = [app.create_job() for _ in range(3)]
    jobs = before + in_flight + edge + after
    watching.until(watching.judged(j.job_id for j in jobs))
    totals = watching.stop()

    judged = Counter(v.job_id for v in watching.verdicts)
    assert {job_id: n for job_id, n in judged.items() if n != 1} == {}  # none judged twice
    assert set(judged) == {j.job_id for j in jobs}  # none lost, none made up
    ordinal = {j.job_id: worker.shared.book.ordinal(j.job_id) for j in jobs}
    assert sorted(ordinal.values()) == list(range(1, len(jobs) + 1))
    for verdict in watching.verdicts:
        number = ordinal[verdict.job_id]
        found = [(str(f.kind), f.step) for f in verdict.violations]
        if number in VIOLATED:
            assert (verdict.outcome, found[0]) == ("violated", ("skipped_step", VIOLATED[number])), (number, found)
        elif number in FAILED:
            assert (verdict.outcome, found) == ("failed", []), (number, found)
        else:
            assert (verdict.outcome, found) == ("completed", []), (number, [f.text() for f in verdict.violations])
    assert unfinished > 0  # the server stopped under jobs in flight
    assert totals is not None and totals.reconnects >= 1
    assert any(note.startswith("reconnected") for note in totals.notes), totals.notes
    assert totals.outcomes == Counter({"completed": len(jobs) - 4, "violated": 2, "failed": 2})

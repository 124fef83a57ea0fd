"""`ye-run watch --metrics-port`: the Prometheus endpoint, scraped over HTTP beside the reference pipeline with
faults injected among healthy jobs; its counters match the verdicts, by outcome and by kind and step."""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from runner.cli.main import cli
from runner.definition import DEFAULT
from runner.scenario import loader
from runner.watch.latency import StepTimer
from runner.watch.loop import Watch
from runner.watch.metrics import WatchMetrics
from runner.watch.source import Write
from tests.conftest import new_tenant
from tests.watch.app import WAIT, App, Watching
from tests.watch.test_cli import url
from tests.watch.test_reference import FAILS, FAULTS, HEALTHY_FAULTS, pipeline, short_timeouts

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def stack():
    with contextlib.ExitStack() as s:
        yield s


def scrape(address: str) -> Samples:
    """Every sample the endpoint serves: (name, sorted labels) -> value."""
    with urllib.request.urlopen(address, timeout=10) as response:
        text = response.read().decode("utf-8")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def by(samples: Samples, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """The samples of one metric, keyed by the values of `labels`; zeros left out."""
    out = {}
    for (sample, pairs), value in samples.items():
        if sample == name and value:
            found = dict(pairs)
            out[tuple(found[label] for label in labels)] = value
    return out


def scrape_until(address: str, condition: Callable[[Samples], bool], what: str) -> Samples:
    deadline = time.monotonic() + WAIT
    while True:
        samples = scrape(address)
        if condition(samples):
            return samples
        assert time.monotonic() < deadline, f"not reached in time: {what}"
        time.sleep(0.2)  # polling the endpoint for a condition, with a deadline


def metered(watch: Watch, stack: contextlib.ExitStack) -> str:
    """Metrics on `watch` (attached before any job exists: nothing is missed), served on a free port."""
    definition = watch.options.definition
    metrics = WatchMetrics(definition)
    metrics.attach(watch)
    watch.readers.append(StepTimer(definition, [metrics.step_latency]))
    server = metrics.serve("127.0.0.1", 0)
    stack.callback(server.close)
    assert server.port > 0
    return server.url


def test_the_counters_match_the_verdicts_after_faults_among_healthy_jobs(database_with, tmp_path, stack):
    database = database_with()
    definition = loader.load_definition(short_timeouts(tmp_path))
    tenant = new_tenant()
    app = App(database, tenant, stack)
    watching = Watching(database, stack, definition=definition, max_retries=1, settle=2.0)
    address = metered(watching.watch, stack)
    faults = [{**fault, "jobs": [ordinal]} for ordinal, (fault, _) in FAULTS.items()]
    faults += [{**fault, "jobs": [ordinal]} for ordinal, fault in {**FAILS, **HEALTHY_FAULTS}.items()]
    pipeline(database, tenant, stack, definition, faults, max_retries=3)
    jobs = [app.create_job(variants=2) for _ in range(20)]
    verdicts = watching.until(watching.judged(j.job_id for j in jobs))
    judged = "ye_run_watch_jobs_judged_total"
    samples = scrape_until(address, lambda s: sum(by(s, judged, "outcome").values()) == 20
                           and not by(s, "ye_run_watch_jobs_in_flight", "step"), "every job judged, none in flight")

    outcomes = Counter(v.outcome for v in verdicts)
    assert outcomes == {"violated": len(FAULTS), "failed": len(FAILS), "completed": 20 - len(FAULTS) - len(FAILS)}
    assert by(samples, judged, "outcome") == {(o,): n for o, n in outcomes.items()}
    violations = Counter((str(f.kind), f.step or "none") for v in verdicts for f in v.violations)
    assert by(samples, "ye_run_watch_violations_total", "kind", "step") == violations
    assert {(str(kind), step) for _, (kind, step, _) in FAULTS.values()} <= set(violations)

    latency = by(samples, "ye_run_watch_step_latency_seconds_count", "step")
    ran = definition.names[1:]  # the first is the seeded state, never run
    assert set(latency) == {(step,) for step in ran}, latency  # job-level ones too (they write only done)
    assert latency[("vlm_analyze",)] >= 2 * (20 - 1)  # every variant of every job but the one failed before it
    assert by(samples, "ye_run_watch_step_latency_seconds_bucket", "step", "le")[("planner", "+Inf")] == \
        latency[("planner",)]

    watch = watching.watch
    watching.stop()
    final = scrape(address)
    assert final[("ye_run_watch_writes_read_total", ())] == watch.writes > 20 * 2 * 18
    assert final[("ye_run_watch_queries_total", ())] == watch.source.queries > 0
    assert final[("ye_run_watch_reconnects_total", ())] == 0
    assert final[("ye_run_watch_last_read_timestamp_seconds", ())] > 0
    assert final[("process_resident_memory_bytes", ())] > 0


def test_port_zero_takes_a_free_port_and_a_taken_or_bad_port_is_one_clear_error(database_with):
    database = database_with()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["watch", "--database-url", url(database), "--once", "--since", "1m",
                                          "--metrics-port", str(port)])
    assert result.exit_code == 2, result.output
    assert f"ye-run: error: --metrics-port {port}: cannot listen on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["watch", "--database-url", url(database), "--once", "--since", "1m",
                                      "--metrics-port", "70000"])
    assert result.exit_code == 2 and "--metrics-port 70000: a TCP port is 0 to 65535" in result.output
    result = CliRunner().invoke(cli, ["watch", "--database-url", url(database), "--once", "--since", "1m",
                                      "--metrics-port", "0"])
    assert result.exit_code == 0, result.output
    assert "watch: metrics on http://127.0.0.1:" in result.output
    assert ":0/" not in result.output  # the port it took, not 0


def test_a_step_is_timed_from_running_to_done_and_a_done_only_stage_from_the_write_that_set_it_off():
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    rows = iter(range(1, 1000))

    def w(kind: str, step: str, status: str, at: float) -> Write:
        row = "variant-1" if kind == "v" else "job-1"
        return Write(next(rows), kind, row, "job-1", step, status, None, start + timedelta(seconds=at))

    measured: list[tuple[str, float]] = []
    timer = StepTimer(DEFAULT, [lambda step, seconds: measured.append((step, seconds))])
    timer([w("v", "img_gen", "running", 0), w("v", "img_gen", "done", 2),
           w("v", "vlm_analyze", "running", 3), w("v", "vlm_analyze", "failed", 4),  # a retry: timed from its run
           w("v", "vlm_analyze", "queued", 5), w("v", "vlm_analyze", "running", 6)])
    timer([w("v", "vlm_analyze", "done", 9), w("v", "vlm_analyze", "done", 10),  # a duplicate: not a second run
           w("v", "vlm_analyse", "running", 11), w("v", "vlm_analyse", "done", 12),  # unknown: not timed
           w("j", "planner", "done", 13),  # the job row following its variants: not its step
           w("j", "iou_eval", "done", 20), w("j", "ad_copy_gen_kor", "done", 25),
           w("j", "instagram_feed_gen", "done", 27.5), w("j", "instagram_feed_gen", "done", 28)])
    assert measured == [("img_gen", 2.0), ("vlm_analyze", 3.0), ("ad_copy_gen_kor", 5.0), ("instagram_feed_gen", 2.5)]

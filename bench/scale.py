"""Scale: 1,000 jobs x 3 variants in interval mode through the zero-latency reference pipeline.

The pipeline runs in its own process (`ye-run pipeline`), the runner in another
(`ye-run run --no-reference-pipeline`), both on one embedded server, so the runner's own
CPU time and peak RSS can be measured. From the runner's JSON report: statements it sent per
second, and the lag between a transition's database time and the runner seeing it, at the
start of the run vs the end (it must not grow).

    python bench/scale.py [--jobs N] [--interval 10ms] [--max-in-flight 200]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import select
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.db import embedded  # noqa: E402
from runner.db.connect import connect_args, parse_url  # noqa: E402
from runner.pipeline.stats import percentile  # noqa: E402


def lags(report: dict) -> list[tuple[datetime, float]]:
    out = []
    for job in report["scenarios"][0]["jobs"]:
        for variant in job["variants"]:
            for t in variant["trace"]:
                if t["source"] == "history" and t["db_time"]:
                    seen = datetime.fromisoformat(t["seen_time"])
                    out.append((seen, (seen - datetime.fromisoformat(t["db_time"])).total_seconds()))
    return sorted(out)


class BareListener(threading.Thread):
    """A plain psycopg2 LISTEN client: the same lag measure for the same transitions, as a reference."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.conn = psycopg2.connect(**connect_args(parse_url(url)))
        self.conn.autocommit = True
        self.conn.cursor().execute("LISTEN job_variant_state_changed")
        self.samples: list[tuple[datetime, float]] = []
        self.arrivals: dict[tuple[str, str, str], datetime] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if select.select([self.conn], [], [], 0.2)[0]:
                self.conn.poll()
                now = datetime.now(timezone.utc)
                for note in self.conn.notifies:
                    data = json.loads(note.payload)
                    self.samples.append((now, (now - datetime.fromisoformat(data["updated_at"])).total_seconds()))
                    self.arrivals[(data["job_variants_id"], data["current_step"], data["status"])] = now
                self.conn.notifies.clear()


@contextlib.contextmanager
def interval_run(name: str, jobs: int, interval: str, max_in_flight: int) -> Iterator[tuple[Path, Path, dict, str]]:
    """An embedded server, an interval scenario of `jobs` jobs in a temporary folder, and the zero-latency reference
    pipeline driving it in its own process (`ye-run pipeline`), stopped at the end: (folder, scenario, env, url).
    The runner is the caller's: `ye-run run <scenario> --no-reference-pipeline` with `env`."""
    ye_run = str(Path(sys.executable).with_name("ye-run"))
    with tempfile.TemporaryDirectory() as tmp, embedded.server(ephemeral=True) as database:
        url = database.url.render_as_string(hide_password=False)
        scenario = Path(tmp) / f"{name}.yaml"
        scenario.write_text(
            f"name: {name}\ntenant: {{id: ye_{name}_test, isolate: true}}\ncleanup: never\nsimulate_img_gen: true\n"
            f"mode: {{type: interval, jobs: {jobs}, interval: {interval}, "
            f"max_in_flight: {max_in_flight}}}\ntimeouts: {{step: 2m, stall: 2m, job: 10m}}\n")
        env = {**os.environ, "YE_DATABASE_URL": url, "CI": "true"}
        pipeline = subprocess.Popen([ye_run, "pipeline", "-q"], env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # the worker LISTENs before the first job (a start-up pause, not a measurement)
        try:
            yield Path(tmp), scenario, env, url
        finally:
            pipeline.terminate()
            pipeline.wait(30)


def tenths(samples: list[tuple[datetime, float]]) -> str:
    chunks = [samples[i * len(samples) // 10:(i + 1) * len(samples) // 10] for i in range(10)]
    return "  ".join(f"{percentile([lag for _, lag in c], 0.5) * 1000:.0f}" for c in chunks if c)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--interval", default="10ms")
    parser.add_argument("--max-in-flight", type=int, default=200)
    args = parser.parse_args()
    ye_run = str(Path(sys.executable).with_name("ye-run"))
    with interval_run("scale", args.jobs, args.interval, args.max_in_flight) as (tmp, scenario, env, url):
        bare = BareListener(url)
        bare.start()
        report_path = Path(tmp) / "report.json"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        runner = subprocess.run([ye_run, "-q", str(scenario), "--no-reference-pipeline", "--json", str(report_path),
                                 "--asset-dir", str(Path(tmp) / "assets")], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pipeline is not reaped yet: not counted
        bare.stop.set()
        bare.join(2)
        if runner.returncode != 0:
            raise SystemExit(f"runner exited {runner.returncode}:\n{runner.stdout[-3000:]}{runner.stderr[-3000:]}")
        report = json.loads(report_path.read_text())
    scenario_report = report["scenarios"][0]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    series = [lag for _, lag in lags(report)]
    tenth = max(1, len(series) // 10)
    first, last = series[:tenth], series[-tenth:]
    transitions = len(series)
    print(f"jobs: {len(scenario_report['jobs'])} x 3 variants, outcome {scenario_report['outcome']}, "
          f"{transitions} transitions observed in {wall:.1f}s wall")
    print(f"runner CPU: {cpu:.1f}s ({cpu / wall * 100:.0f}% of one core); peak RSS: {after.ru_maxrss / 1024:.0f} MiB")
    print(f"statements sent by the runner: {scenario_report['statements']} "
          f"({scenario_report['statements'] / scenario_report['duration']:.0f}/s); observer queries "
          f"{scenario_report['observation']['queries']}, notifications {scenario_report['observation']['notifications']}")
    print(f"lag db_time -> seen, first 10%: p50 {percentile(first, 0.5) * 1000:.1f}ms p95 "
          f"{percentile(first, 0.95) * 1000:.1f}ms; last 10%: p50 {percentile(last, 0.5) * 1000:.1f}ms p95 "
          f"{percentile(last, 0.95) * 1000:.1f}ms")
    print(f"lag p50 (ms) by tenth of the run, ye-run:           {tenths(lags(report))}")
    print(f"lag p50 (ms) by tenth of the run, bare LISTEN client: {tenths(sorted(bare.samples))}")
    behind = []
    for job in scenario_report["jobs"]:
        for variant in job["variants"]:
            for t in variant["trace"]:
                arrived = bare.arrivals.get((variant["variant_id"], t["step"], t["status"]))
                if arrived is not None:
                    seen = datetime.fromisoformat(t["seen_time"])
                    behind.append((seen, (seen - arrived).total_seconds()))
    print(f"ye-run behind the bare client (ms), by tenth:      {tenths(sorted(behind))}")


if __name__ == "__main__":
    main()

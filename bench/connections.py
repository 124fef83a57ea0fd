"""Connections ye-run holds: per scenario, and the peak of a `-j 16` suite under the connection budget.

Runs `ye-run` as a user would (a subprocess, the in-process reference pipeline) against an embedded
server this script owns, samples `pg_stat_activity` every 10 ms meanwhile, and prints the budget
the suite chose, the connections one scenario holds, and the peak of the whole suite.

    python bench/connections.py [--scenarios 32] [-j 16]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.db import embedded  # noqa: E402
from runner.db.connect import connect_args, parse_url  # noqa: E402

SCENARIO = ("name: c{i}\ntenant: {{id: ye_bench_conn_test, isolate: true}}\nsimulate_img_gen: true\n"
            "mode: {{type: interval, jobs: 6, interval: 200ms}}\nreference_pipeline: {{latency: {{default: 10ms}}}}\n")


class Sampler:
    """The most ye-run connections (and LISTEN ones) seen at once, and the most of any client."""

    def __init__(self, url: str):
        self.url = url
        self.ye_run = self.listen = self.clients = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with contextlib.closing(psycopg2.connect(**connect_args(parse_url(self.url)))) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                while not self.stop.wait(0.01):
                    cur.execute("SELECT count(*) FILTER (WHERE application_name LIKE 'ye-run%%'), "
                                "count(*) FILTER (WHERE application_name = 'ye-run listen'), count(*) "
                                "FROM pg_stat_activity WHERE backend_type = 'client backend'")
                    ye_run, listen, clients = cur.fetchone()
                    self.ye_run, self.listen = max(self.ye_run, ye_run), max(self.listen, listen)
                    self.clients = max(self.clients, clients)


def run_suite(url: str, folder: Path, jobs: int) -> tuple[Sampler, str, float]:
    sampler = Sampler(url)
    sampler.thread.start()
    started = time.monotonic()
    done = subprocess.run([str(Path(sys.executable).with_name("ye-run")), "run", str(folder), "-j", str(jobs),
                           "--database-url", url, "--reference-pipeline"], cwd=ROOT,
                          env={**os.environ, "CI": "true"}, capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - started
    sampler.stop.set()
    sampler.thread.join()
    if done.returncode != 0:
        raise SystemExit(f"ye-run failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    budget = next((line for line in done.stdout.splitlines() if "connection budget" in line), "(-j not held back)")
    return sampler, budget, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", type=int, default=32)
    parser.add_argument("-j", "--jobs", type=int, default=16)
    args = parser.parse_args()
    holder = Path(tempfile.mkdtemp(prefix="ye-run-conn-"))
    handle = embedded._start(holder / "pg", "delete")
    try:
        url = embedded._prepare(handle.get_uri()).url.render_as_string(hide_password=False)
        one, suite = holder / "one", holder / "suite"
        one.mkdir()
        suite.mkdir()
        (one / "c0.yaml").write_text(SCENARIO.format(i=0))
        for i in range(args.scenarios):
            (suite / f"c{i}.yaml").write_text(SCENARIO.format(i=i))
        single, _, _ = run_suite(url, one, 1)
        many, budget, wall = run_suite(url, suite, args.jobs)
    finally:
        handle.cleanup()
        shutil.rmtree(holder, ignore_errors=True)
    print(f"one scenario (reference pipeline, 8 slots): {single.ye_run} ye-run connection(s) at peak, "
          f"{single.listen} LISTEN")
    print(f"{args.scenarios} scenarios at -j {args.jobs}: {many.ye_run} ye-run connection(s) at peak "
          f"({many.listen} LISTEN), {many.clients} client connection(s) in all, {wall:.1f}s")
    print(f"  {budget}")


if __name__ == "__main__":
    main()

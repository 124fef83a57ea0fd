"""Soak: a nightly-length run (10,000 jobs x 3 variants) in bounded memory.

Like `bench/scale.py`: the zero-latency reference pipeline in its own process (`ye-run
pipeline`), the runner in another (`ye-run run --no-reference-pipeline --json`), one embedded
server. The runner's resident memory is sampled from /proc while it runs; its peak comes from
the kernel (wait4). From its JSON report: the lag from a transition's database time to the
runner reading it, by tenth of the run; the report must be complete (every job, every variant's
whole trace) and valid against `schemas/report.schema.json`.

Targets (#9): peak RSS at most 120 MiB; RSS in the last tenth of the run within 10% of the
first tenth; lag p50 flat (last tenth at most twice the first, or within 10 ms of it).

    python bench/soak.py [--jobs 10000] [--interval 10ms] [--max-in-flight 200] [--keep DIR] [--html]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scale import interval_run, lags, tenths  # noqa: E402
from runner import resources  # noqa: E402
from runner.definition import DEFAULT  # noqa: E402
from runner.pipeline.stats import percentile  # noqa: E402

MIB = 1024 * 1024


class RssSampler(threading.Thread):
    """VmRSS of one process every `every` seconds, with the time it was read."""

    def __init__(self, pid: int, every: float):
        super().__init__(daemon=True)
        self.path = Path(f"/proc/{pid}/status")
        self.every = every
        self.samples: list[tuple[float, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            try:
                text = self.path.read_text()
            except OSError:
                return
            for line in text.splitlines():
                if line.startswith("VmRSS:"):
                    self.samples.append((time.monotonic(), int(line.split()[1]) * 1024))


def by_tenth(samples: list[tuple[float, int]], start: float, end: float) -> list[int]:
    """The highest RSS in each tenth of [start, end]."""
    out = []
    for i in range(10):
        lo, hi = start + (end - start) * i / 10, start + (end - start) * (i + 1) / 10
        chunk = [rss for at, rss in samples if lo <= at < hi]
        out.append(max(chunk) if chunk else 0)
    return out


def check_report(report: dict, jobs: int) -> list[str]:
    """What makes the report incomplete: a missing job, a job not passed, a variant whose trace stops short."""
    problems = []
    scenario = report["scenarios"][0]
    if len(scenario["jobs"]) != jobs:
        problems.append(f"{len(scenario['jobs'])} jobs in the report; {jobs} were run")
    last = (DEFAULT.last_variant_step, "done")
    for job in scenario["jobs"]:
        if job["outcome"] != "passed":
            problems.append(f"job {job['ordinal']}: {job['outcome']}")
        for variant in job["variants"]:
            end = (variant["trace"][-1]["step"], variant["trace"][-1]["status"]) if variant["trace"] else None
            if end != last:
                problems.append(f"job {job['ordinal']} variant #{variant['creation_order']}: trace ends at {end}")
    return problems[:10]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--interval", default="10ms")
    parser.add_argument("--max-in-flight", type=int, default=200)
    parser.add_argument("--sample", type=float, default=0.25, help="seconds between RSS samples")
    parser.add_argument("--keep", type=Path, help="copy the JSON report and the runner's output here")
    parser.add_argument("--html", action="store_true", help="also ask for the HTML report (its size is printed)")
    args = parser.parse_args()
    ye_run = str(Path(sys.executable).with_name("ye-run"))
    with interval_run("soak", args.jobs, args.interval, args.max_in_flight) as (tmp, scenario, env, _):
        report_path = Path(tmp) / "report.json"
        out_path, err_path = Path(tmp) / "stdout.txt", Path(tmp) / "stderr.txt"
        with out_path.open("w") as out, err_path.open("w") as err:
            start = time.monotonic()
            html = ["--html", str(Path(tmp) / "report.html")] if args.html else []
            runner = subprocess.Popen([ye_run, "-q", str(scenario), "--no-reference-pipeline", "--json",
                                       str(report_path), *html, "--asset-dir", str(Path(tmp) / "assets")],
                                      env=env, stdout=out, stderr=err)
            sampler = RssSampler(runner.pid, args.sample)
            sampler.start()
            _, status, usage = os.wait4(runner.pid, 0)
            end = time.monotonic()
            runner.returncode = os.waitstatus_to_exitcode(status)
            sampler.done.set()
            sampler.join(2)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for path in (report_path, out_path, err_path):
                if path.exists():
                    shutil.copy(path, args.keep / path.name)
        if runner.returncode != 0:
            raise SystemExit(f"runner exited {runner.returncode}:\n{out_path.read_text()[-3000:]}"
                             f"{err_path.read_text()[-3000:]}")
        size = report_path.stat().st_size
        page = (Path(tmp) / "report.html").stat().st_size if args.html else None
        report = json.loads(report_path.read_text())
    wall = end - start
    tenth_rss = by_tenth(sampler.samples, start, end)
    peak = usage.ru_maxrss * 1024
    growth = tenth_rss[-1] / tenth_rss[0] - 1 if tenth_rss[0] else float("nan")
    series = lags(report)
    transitions = len(series)
    tenth = max(1, transitions // 10)
    first = percentile([lag for _, lag in series[:tenth]], 0.5)
    last = percentile([lag for _, lag in series[-tenth:]], 0.5)
    validated = time.perf_counter()
    errors = [e.message for _, e in zip(range(3), resources.validator("report.schema.json").iter_errors(report))]
    validated = time.perf_counter() - validated
    incomplete = check_report(report, args.jobs)
    cpu = usage.ru_utime + usage.ru_stime
    scenario_report = report["scenarios"][0]
    print(f"jobs: {len(scenario_report['jobs'])} x 3 variants, outcome {scenario_report['outcome']}, "
          f"{transitions} transitions observed in {wall:.1f}s wall; runner CPU {cpu:.1f}s "
          f"({cpu / wall * 100:.0f}% of one core)")
    print(f"runner peak RSS: {peak / MIB:.1f} MiB (target <= 120)")
    print(f"runner RSS (MiB), highest in each tenth of the run: {'  '.join(f'{r / MIB:.0f}' for r in tenth_rss)}")
    print(f"growth, first tenth -> last tenth: {growth * 100:+.1f}% (target < 10%)")
    print(f"lag p50 first 10%: {first * 1000:.1f} ms, last 10%: {last * 1000:.1f} ms "
          f"({'flat' if last <= max(2 * first, first + 0.010) else 'GROWING'})")
    print(f"lag p50 (ms) by tenth of the run: {tenths(series)}")
    print(f"JSON report: {size / MIB:.0f} MiB, {'complete' if not incomplete else 'INCOMPLETE: ' + '; '.join(incomplete)}, "
          f"{'valid' if not errors else 'INVALID: ' + '; '.join(errors)} against report.schema.json "
          f"(checked in {validated:.0f}s)")
    if page is not None:
        print(f"HTML report: {page / MIB:.1f} MiB (written by the same run; its peak RSS above includes it)")
    met = peak <= 120 * MIB and growth < 0.10 and last <= max(2 * first, first + 0.010) and not errors \
        and not incomplete
    short = " (a short run: start-up, imports included, is much of its first tenth)" if wall < 60 else ""
    print("targets: " + ("met" if met else "NOT met") + short)


if __name__ == "__main__":
    main()

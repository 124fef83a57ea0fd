"""`pytest scenarios/` serial against `-n 2` and `-n 4` (pytest-xdist), on the embedded default.

The shipped scenarios, run through the pytest plugin as a user runs them. The workers of one
run share one embedded server (each process joins it; the last to leave stops it), so a run
starts one server whatever `-n` is: the server log's "ready to accept connections" lines are
counted per run to show it. Every run starts from a stopped server on a warm data directory
(initialised by a first, unmeasured run), as a second `pytest` on a developer machine does.
The verdicts (from `--junitxml`) must be the same for every `-n`. Each worker is a fresh Python
process that loads every installed pytest plugin: `--pytest-args "-p no:NAME"` leaves out one
that is no part of ye-run's (hypothesis's costs about a second of CPU per process).

    python bench/pytest_xdist.py [--rounds N] [--workers 2,4] [--pytest-args "-p no:hypothesispytest"]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READY = "database system is ready to accept connections"


def run(workers: int, data: Path, junit: Path, extra: list[str]) -> tuple[float, dict[str, str], int]:
    """One `pytest scenarios/`: its wall time, each item's verdict, and how many servers it started."""
    env = {**os.environ, "YE_EMBEDDED_DIR": str(data), "CI": "true"}
    env.pop("YE_DATABASE_URL", None)
    log = data / "log"
    before = log.read_text(errors="replace").count(READY) if log.exists() else 0
    args = [sys.executable, "-m", "pytest", "scenarios", "-q", "-p", "no:cacheprovider", "--junitxml", str(junit),
            *extra]
    if workers:
        args += ["-n", str(workers)]
    start = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode not in (0, 1):  # 1: a scenario failed; the verdicts are compared below
        raise SystemExit(f"-n {workers} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    verdicts = {case.get("name"): _verdict(case) for case in ET.parse(junit).getroot().iter("testcase")}
    started = log.read_text(errors="replace").count(READY) - before
    if (data / "postmaster.pid").exists():
        raise SystemExit(f"-n {workers}: the embedded server outlived the run")
    return took, verdicts, started


def _verdict(case: ET.Element) -> str:
    for outcome in ("failure", "error", "skipped"):
        if case.find(outcome) is not None:
            return outcome
    return "passed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="2,4", help="comma-separated -n values compared with a serial run")
    parser.add_argument("--pytest-args", default="", help="more pytest arguments for every run (one string)")
    args = parser.parse_args()
    extra = shlex.split(args.pytest_args)
    modes = [0] + [int(n) for n in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        data, junit = Path(tmp) / "pg", Path(tmp) / "junit.xml"
        _, expected, _ = run(0, data, junit, extra)  # initdb and the schema, not measured
        walls: dict[int, list[float]] = {n: [] for n in modes}
        servers: dict[int, set[int]] = {n: set() for n in modes}
        for _ in range(args.rounds):
            for n in modes:  # interleaved, so a busy moment of the machine touches every mode alike
                took, verdicts, started = run(n, data, junit, extra)
                if verdicts != expected:
                    raise SystemExit(f"verdicts differ: serial {expected} vs -n {n} {verdicts}")
                walls[n].append(took)
                servers[n].add(started)
    serial = statistics.median(walls[0])
    shown = f" ({args.pytest_args})" if extra else ""
    print(f"{len(expected)} shipped scenarios, {args.rounds} rounds{shown}, identical verdicts; median wall:")
    for n in modes:
        label = f"-n {n}" if n else "serial"
        wall = statistics.median(walls[n])
        print(f"  {label:<7} {wall:6.2f}s  ({wall / serial:.2f}x serial; servers started per run: "
              f"{', '.join(map(str, sorted(servers[n])))})")


if __name__ == "__main__":
    main()

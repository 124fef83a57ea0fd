"""A suite of 8 I/O-bound scenarios with -j 1 and -j 4, and `ye-run --help` against `import click`.

Each scenario has step latency in its reference pipeline (a few seconds, mostly waiting), so
running them side by side should cut the wall time; the verdicts must be identical. Both runs
use the same warm embedded server (its own data directory). The --help figure shows the CLI
imports only what a command needs.

    python bench/suite.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = """\
name: bench-{i}
tenant: {{id: ye_bench_test}}
simulate_img_gen: true
mode: {{type: wait_for_completion, jobs: 2}}
reference_pipeline: {{latency: {{default: 120ms}}, seed: {i}}}
"""


def timed(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, done


def suite(folder: Path, data: Path, parallel: int) -> tuple[float, dict]:
    env = {**os.environ, "YE_EMBEDDED_DIR": str(data), "CI": "true"}
    env.pop("YE_DATABASE_URL", None)
    report = folder / f"report-{parallel}.json"
    ye_run = str(Path(sys.executable).with_name("ye-run"))
    took, done = timed([ye_run, "-q", str(folder), "-j", str(parallel), "--json", str(report),
                        "--asset-dir", str(data.parent / "assets")], env)
    if done.returncode != 0:
        raise SystemExit(f"-j {parallel} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    verdicts = {s["name"]: s["outcome"] for s in json.loads(report.read_text())["scenarios"]}
    return took, verdicts


def help_times(rounds: int) -> tuple[float, float]:
    ye_run = str(Path(sys.executable).with_name("ye-run"))
    helps = [timed([ye_run, "--help"], dict(os.environ))[0] for _ in range(rounds)]
    clicks = [timed([sys.executable, "-c", "import click"], dict(os.environ))[0] for _ in range(rounds)]
    return statistics.median(helps), statistics.median(clicks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "suite"
        folder.mkdir()
        for i in range(8):
            (folder / f"bench_{i}.yaml").write_text(SCENARIO.format(i=i))
        data = Path(tmp) / "pg"
        suite(folder, data, 1)  # warm the server and the assets
        serial, parallel = [], []
        for _ in range(args.rounds):
            took, one = suite(folder, data, 1)
            serial.append(took)
            took, four = suite(folder, data, 4)
            parallel.append(took)
            if one != four:
                raise SystemExit(f"verdicts differ: -j 1 {one} vs -j 4 {four}")
    s, p = statistics.median(serial), statistics.median(parallel)
    print(f"8 scenarios, -j 1: median {s:.2f}s; -j 4: median {p:.2f}s; ratio {p / s:.2f} "
          f"({args.rounds} rounds, identical verdicts)")
    helps, clicks = help_times(10)
    print(f"ye-run --help: median {helps * 1000:.0f}ms; python -c 'import click': median {clicks * 1000:.0f}ms; "
          f"ratio {helps / clicks:.2f}")


if __name__ == "__main__":
    main()

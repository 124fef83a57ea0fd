"""`ye-run compare` on two runs of the same suite: how many regressions noise alone raises, night over night.

A suite of three scenarios (10 jobs x 3 variants each, the reference pipeline's default
latencies, so every step takes a few milliseconds) is run with `-j 3` twice per try, on the
embedded default (its own data directory); the two JSON reports are compared with the default
rule (p < 0.01, slower at the median by more than 20% and 10ms) and, for contrast, with the
rule before its absolute floor (p < 0.01 and 20% only).

    python bench/compare_noise.py [--tries 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.report import compare  # noqa: E402
from runner.stats import median  # noqa: E402

SCENARIO = """\
name: {name}
tags: [nightly]
tenant: {{id: ye_bench_noise, isolate: true}}
simulate_img_gen: true
variants: 3
mode: {{type: wait_for_completion, jobs: 10}}
"""


def night(tmp: Path, suite: Path, out: Path) -> dict:
    env = {**os.environ, "YE_EMBEDDED_DIR": str(tmp / "pg"), "CI": "true"}
    env.pop("YE_DATABASE_URL", None)
    done = subprocess.run([str(Path(sys.executable).with_name("ye-run")), "run", str(suite), "-j", "3", "--json",
                           str(out), "--asset-dir", str(tmp / "assets")], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tries", type=int, default=10)
    tries = parser.parse_args().tries
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        suite = tmp / "suite"
        suite.mkdir()
        for name in ("checkout", "catalog", "campaign"):
            (suite / f"{name}.yaml").write_text(SCENARIO.format(name=name))
        now, before, compared = 0, 0, 0
        for i in range(tries):
            base, new = (night(tmp, suite, tmp / f"{i}-{side}.json") for side in ("a", "b"))
            result = compare.compare(base, new)
            compared = len(result.steps)
            now += len(result.regressions)
            before += len(compare.compare(base, new, compare.Thresholds(delta=0.0)).regressions)
            print(f"try {i + 1}: {len(result.regressions)} regression(s) of {compared} steps "
                  f"(without the 10ms floor: {before} so far)", flush=True)
            for change in result.regressions:
                print(f"  {change.scenario} {change.step}: p50 {median(change.base) * 1000:.1f}ms -> "
                      f"{median(change.new) * 1000:.1f}ms (n {len(change.base)} -> {len(change.new)}), "
                      f"p={change.p_value:.2g}", flush=True)
    print(f"{tries} tries, {compared} scenario steps each: {now} regression(s) with the default rule, "
          f"{before} without its absolute floor")


if __name__ == "__main__":
    main()

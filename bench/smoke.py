"""Wall time of `ye-run scenarios/smoke.yaml` on the embedded default, cold and warm.

Cold: a new data directory (initdb, schema install, server start). Warm: the same directory
again (server start, schema already there). The reference pipeline has zero latency, so this
is ye-run's own overhead: interpreter start, imports, the server, seeding, observing, judging.

    python bench/smoke.py [--warm N]

Then the floor, each the median of as many runs in a new process: the interpreter alone, the
interpreter importing what `ye-run run` imports, and the embedded server started and stopped
on the same (warm) directory with nothing else (`embedded.server()`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def once(data: Path) -> float:
    env = {**_as_users_run(), "YE_EMBEDDED_DIR": str(data), "CI": "true"}
    env.pop("YE_DATABASE_URL", None)
    ye_run = Path(sys.executable).with_name("ye-run")
    start = time.perf_counter()
    done = subprocess.run([str(ye_run), "-q", "scenarios/smoke.yaml", "--asset-dir", str(data.parent / "assets")],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"smoke failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return took


def _as_users_run() -> dict[str, str]:
    """The environment, as a user's shell has it: Python caches compiled modules (some sandboxes set
    PYTHONDONTWRITEBYTECODE, which, with an editable install, compiles ye-run's modules again on every start:
    about 0.15 s more; the cold run writes the cache)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _timed(code: str, data: Path) -> float:
    env = {**_as_users_run(), "YE_EMBEDDED_DIR": str(data)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


FLOOR = {
    "interpreter alone": "pass",
    "interpreter + the run's imports": "import runner.cli.run, runner.engine.session, runner.engine.run, "
                                       "runner.report.console, runner.db.embedded",
    "interpreter + embedded server start and stop": "from runner.db import embedded\n"
                                                    "with embedded.server():\n    pass",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warm", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pg"
        cold = once(data)
        warm = [once(data) for _ in range(args.warm)]
        floor = {name: statistics.median(_timed(code, data) for _ in range(args.warm)) for name, code in FLOOR.items()}
    print(f"cold (initdb + schema + run): {cold:.2f}s")
    print(f"warm ({args.warm} runs): median {statistics.median(warm):.2f}s, min {min(warm):.2f}s, "
          f"max {max(warm):.2f}s")
    for name, took in floor.items():
        print(f"floor: {name}: median {took:.2f}s")


if __name__ == "__main__":
    main()

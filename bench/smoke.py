"""Wall time of `ye-run scenarios/smoke.yaml` on the embedded default, cold and warm.

Cold: a new data directory (initdb, schema install, server start). Warm: the same directory
again (server start, schema already there). The reference pipeline has zero latency, so this
is ye-run's own overhead: interpreter start, imports, the server, seeding, observing, judging.

    python bench/smoke.py [--warm N]
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
    env = {**os.environ, "YE_EMBEDDED_DIR": str(data), "CI": "true"}
    env.pop("YE_DATABASE_URL", None)
    ye_run = Path(sys.executable).with_name("ye-run")
    start = time.perf_counter()
    done = subprocess.run([str(ye_run), "-q", "scenarios/smoke.yaml", "--asset-dir", str(data.parent / "assets")],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"smoke failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warm", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pg"
        cold = once(data)
        warm = [once(data) for _ in range(args.warm)]
    print(f"cold (initdb + schema + run): {cold:.2f}s")
    print(f"warm ({args.warm} runs): median {statistics.median(warm):.2f}s, min {min(warm):.2f}s, "
          f"max {max(warm):.2f}s")


if __name__ == "__main__":
    main()

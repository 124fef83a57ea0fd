"""Reference pipeline throughput: transitions per second with zero latency (1, 10, 100 jobs x 3 variants).

Jobs are seeded first; the clock starts when every variant is set to (img_gen, done) in one
statement (so all notifications arrive at once) and stops when the last job row reaches
(iou_eval, done). Usage:

    python bench/pipeline.py [--database-url URL] [--slots N]
"""

from __future__ import annotations

import argparse
import contextlib
import select
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.seed import target  # noqa: E402
from runner.db import catalog, images, registry  # noqa: E402
from runner.db.connect import Database  # noqa: E402
from runner.db.seed import Seeder  # noqa: E402
from runner.pipeline import config as pipeline_config  # noqa: E402
from runner.pipeline.scope import Scope  # noqa: E402
from runner.pipeline.worker import Worker  # noqa: E402
from runner.scenario import loader  # noqa: E402


def seed(database: Database, jobs: int, workdir: Path) -> list[str]:
    path = workdir / "bench.yaml"
    path.write_text("name: bench\nvariants: 3\n")
    scenario = loader.load(path)
    with contextlib.closing(database.connect()) as conn:
        record = registry.RunRecord(registry.new_run_id(), "bench", f"ye_bench_{registry.new_run_id()[-6:]}")
        stored = images.store(scenario.images[0], workdir / "assets")
        seeder = Seeder(conn, catalog.read(conn), scenario, record, stored, registry=False)
        return [seeder.seed_job(i + 1).job_id for i in range(jobs)]


def measure(database: Database, jobs: int, slots: int, workdir: Path) -> tuple[float, int, float]:
    job_ids = seed(database, jobs, workdir)
    worker = Worker(database, pipeline_config.build({"slots": slots}), Scope(job_ids=set(job_ids)))
    worker.start()
    with contextlib.closing(database.connect(autocommit=True)) as conn, conn.cursor() as cur:
        cur.execute("LISTEN job_state_changed")
        start = time.perf_counter()
        cur.execute("UPDATE jobs_variants SET current_step = 'img_gen', status = 'done', "
                    "updated_at = clock_timestamp() WHERE job_id = ANY(%s::uuid[])", (job_ids,))
        remaining = set(job_ids)
        while remaining:
            if not select.select([conn], [], [], 60)[0]:
                raise SystemExit(f"stalled with {len(remaining)} jobs unfinished")
            conn.poll()
            for note in conn.notifies:
                if '"iou_eval"' in note.payload and '"done"' in note.payload:
                    remaining.discard(note.payload.split('"job_id" : "')[1].split('"')[0])
            conn.notifies.clear()
        elapsed = time.perf_counter() - start
    worker.stop()
    return elapsed, worker.stats.transitions, worker.stats.transitions / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url")
    parser.add_argument("--slots", type=int, default=8)
    args = parser.parse_args()
    with target(args.database_url) as (database, label), tempfile.TemporaryDirectory() as workdir:
        print(f"server: {label}; slots: {args.slots}")
        print(f"{'jobs':>6} {'variants':>9} {'transitions':>12} {'seconds':>8} {'transitions/s':>14}")
        for jobs in (1, 10, 100):
            elapsed, transitions, rate = measure(database, jobs, args.slots, Path(workdir))
            print(f"{jobs:>6} {jobs * 3:>9} {transitions:>12} {elapsed:>8.2f} {rate:>14.0f}")


if __name__ == "__main__":
    main()

"""Observation latency: from the commit of a transition to the runner having recorded it.

A writer commits state changes of tracked variants one at a time. Three observers watch the
same commits: a bare psycopg2 LISTEN client (the floor), ye-run's Observer reading its
history table (the notification only wakes it), and ye-run's Observer in listen mode. For
each commit the clock runs from sending COMMIT to each observer holding the transition.
Usage:

    python bench/observe.py [--writes N] [--database-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import select
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pipeline import seed  # noqa: E402
from bench.seed import target  # noqa: E402
from runner.db.connect import Database  # noqa: E402
from runner.observe.observer import ObserveSettings, Observer  # noqa: E402
from runner.pipeline.stats import percentile  # noqa: E402

STATES = [(s, st) for s in ("vlm_analyze", "yolo_detect", "planner", "overlay") for st in ("running", "done")]


class Seen:
    """Arrival times of the i-th write, per observer."""

    def __init__(self, names: list[str]):
        self.times: dict[str, dict[int, float]] = {n: {} for n in names}
        self.cond = threading.Condition()

    def record(self, name: str, index: int) -> None:
        with self.cond:
            self.times[name].setdefault(index, time.perf_counter())
            self.cond.notify_all()

    def wait_all(self, index: int, timeout: float = 10) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: all(index in t for t in self.times.values()), timeout)
        if not ok:
            missing = [n for n, t in self.times.items() if index not in t]
            raise SystemExit(f"write {index} never reached {missing}")


def bare_listener(database: Database, seen: Seen, index_of: dict, stop: threading.Event) -> None:
    conn = database.connect("bench bare", autocommit=True)
    conn.cursor().execute("LISTEN job_variant_state_changed")
    while not stop.is_set():
        if select.select([conn], [], [], 0.1)[0]:
            conn.poll()
            for note in conn.notifies:
                key = next((k for k in index_of if f'"{k[0]}"' in note.payload and f'"{k[1]}"' in note.payload
                            and f'"{k[2]}"' in note.payload), None)
                if key is not None:
                    seen.record("bare LISTEN", index_of[key])
            conn.notifies.clear()
    conn.close()


def observer_loop(database: Database, method: str, name: str, job_id: str, variants: list[str], seen: Seen,
                  index_of: dict, stop: threading.Event) -> None:
    observer = Observer(database, ObserveSettings(method=method, reconcile=60, heartbeat=60), name=f"bench {name}")
    observer.start()
    observer.track(job_id, variants, ("user_img_input", "done"), None, time.monotonic())  # type: ignore[arg-type]
    while not stop.is_set():
        for t in observer.poll(0.1):
            key = (t.row_id, t.step, t.status)
            if key in index_of:
                seen.record(name, index_of[key])
    observer.close()


def measure(database: Database, writes: int, workdir: Path) -> dict[str, list[float]]:
    (job_id,) = seed(database, 1, workdir)
    with contextlib.closing(database.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT job_variants_id::text FROM jobs_variants WHERE job_id = %s ORDER BY creation_order",
                    (job_id,))
        variants = [r[0] for r in cur.fetchall()]
    plan = [(variants[i % len(variants)], *STATES[(i // len(variants)) % len(STATES)]) for i in range(writes)]
    # A state repeats for a variant every len(STATES) writes: key each write by its latest occurrence.
    index_of: dict[tuple[str, str, str], int] = {}
    names = ["bare LISTEN", "ye-run (history)", "ye-run (listen)"]
    seen = Seen(names)
    stop = threading.Event()
    threads = [threading.Thread(target=bare_listener, args=(database, seen, index_of, stop), daemon=True),
               threading.Thread(target=observer_loop, args=(database, "history", names[1], job_id, variants, seen,
                                                            index_of, stop), daemon=True),
               threading.Thread(target=observer_loop, args=(database, "listen", names[2], job_id, variants, seen,
                                                            index_of, stop), daemon=True)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # let all three LISTEN before the first write (a start-up pause, not a measurement)
    latencies: dict[str, list[float]] = {n: [] for n in names}
    with contextlib.closing(database.connect("bench writer")) as conn, conn.cursor() as cur:
        for i, (variant, step, status) in enumerate(plan):
            index_of[(variant, step, status)] = i
            cur.execute("UPDATE jobs_variants SET current_step = %s, status = %s, updated_at = clock_timestamp() "
                        "WHERE job_variants_id = %s", (step, status, variant))
            committed = time.perf_counter()  # COMMIT is sent now; notifications leave the server with it
            conn.commit()
            seen.wait_all(i)
            for name in names:
                latencies[name].append(seen.times[name][i] - committed)
    stop.set()
    for thread in threads:
        thread.join(2)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url")
    parser.add_argument("--writes", type=int, default=1000)
    args = parser.parse_args()
    with target(args.database_url) as (database, label), tempfile.TemporaryDirectory() as workdir:
        latencies = measure(database, args.writes, Path(workdir))
    print(f"server: {label}; {args.writes} commits, one at a time")
    print(f"{'observer':20} {'p50':>9} {'p99':>9} {'mean':>9}")
    for name, values in latencies.items():
        ms = [v * 1000 for v in values]
        print(f"{name:20} {percentile(ms, 0.5):8.3f}ms {percentile(ms, 0.99):8.3f}ms {statistics.fmean(ms):8.3f}ms")


if __name__ == "__main__":
    main()

"""Seeding throughput: jobs per second with 3 and 50 variants, three ways, same run and database.

- ye-run:      the Seeder (one transaction per job, one round trip for the core rows, registry rows)
- per-row:     one commit per row, as the original tool did
- bare floor:  a hand-written psycopg2 transaction per job with one batched variants insert

Ways are interleaved in rounds so drift (table growth, caches) hits them alike; the median
round is reported. Usage:

    python bench/seed.py                       # embedded server (ephemeral)
    python bench/seed.py --database-url URL    # an external server (uses a fresh database)
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.db import catalog, embedded, images, registry, schema  # noqa: E402
from runner.db.connect import Database, parse_url  # noqa: E402
from runner.db.seed import Seeder  # noqa: E402
from runner.scenario import loader  # noqa: E402

IMAGE = ROOT / "pipeline_test" / "pipeline_test_image9.jpg"


def scenario(variants: int, workdir: Path):  # type: ignore[no-untyped-def]
    path = workdir / f"bench_{variants}.yaml"
    path.write_text(f"name: bench\nvariants: {variants}\nimages: [{IMAGE}]\n")
    return loader.load(path)


def ye_run_way(database: Database, variants: int, workdir: Path) -> Callable[[int], None]:
    conn = database.connect("bench ye-run")
    snapshot = catalog.read(conn)
    record = registry.RunRecord(registry.new_run_id(), "bench", f"ye_bench_{uuid.uuid4().hex[:6]}")
    registry.start(conn, record)
    stored = images.store(IMAGE, workdir / "assets")
    seeder = Seeder(conn, snapshot, scenario(variants, workdir), record, stored, registry=True)

    def run(jobs: int) -> None:
        for i in range(jobs):
            seeder.seed_job(i + 1)

    return run


def per_row_way(database: Database, variants: int, workdir: Path) -> Callable[[int], None]:
    conn = database.connect("bench per-row")
    tenant = f"ye_bench_{uuid.uuid4().hex[:6]}"
    cur = conn.cursor()
    cur.execute("INSERT INTO tenants (tenant_id, name) VALUES (%s, 'bench') ON CONFLICT DO NOTHING", (tenant,))
    conn.commit()

    def run(jobs: int) -> None:
        for _ in range(jobs):
            job, asset = str(uuid.uuid4()), str(uuid.uuid4())
            cur.execute("INSERT INTO jobs (job_id, tenant_id, status, current_step) VALUES (%s, %s, 'done', "
                        "'user_img_input')", (job, tenant))
            conn.commit()
            cur.execute("INSERT INTO image_assets (image_asset_id, image_type, image_url, width, height, tenant_id, "
                        "job_id) VALUES (%s, 'generated', 'file:///bench.jpg', 640, 640, %s, %s)", (asset, tenant, job))
            conn.commit()
            cur.execute("INSERT INTO job_inputs (job_id, img_asset_id, desc_kor) VALUES (%s, %s, 'bench')", (job, asset))
            conn.commit()
            for order in range(1, variants + 1):
                cur.execute("INSERT INTO jobs_variants (job_variants_id, job_id, img_asset_id, creation_order, status, "
                            "current_step) VALUES (%s, %s, %s, %s, 'done', 'user_img_input')",
                            (str(uuid.uuid4()), job, asset, order))
                conn.commit()

    return run


def floor_way(database: Database, variants: int, workdir: Path) -> Callable[[int], None]:
    conn = database.connect("bench floor")
    tenant = f"ye_bench_{uuid.uuid4().hex[:6]}"
    cur = conn.cursor()
    cur.execute("INSERT INTO tenants (tenant_id, name) VALUES (%s, 'bench') ON CONFLICT DO NOTHING", (tenant,))
    conn.commit()
    values = ", ".join(["(%s, %s, %s, %s, 'done', 'user_img_input')"] * variants)

    def run(jobs: int) -> None:
        for _ in range(jobs):
            job, asset = str(uuid.uuid4()), str(uuid.uuid4())
            cur.execute("INSERT INTO jobs (job_id, tenant_id, status, current_step) VALUES (%s, %s, 'done', "
                        "'user_img_input')", (job, tenant))
            cur.execute("INSERT INTO image_assets (image_asset_id, image_type, image_url, width, height, tenant_id, "
                        "job_id) VALUES (%s, 'generated', 'file:///bench.jpg', 640, 640, %s, %s)", (asset, tenant, job))
            cur.execute("INSERT INTO job_inputs (job_id, img_asset_id, desc_kor) VALUES (%s, %s, 'bench')", (job, asset))
            params: list = []
            for order in range(1, variants + 1):
                params += [str(uuid.uuid4()), job, asset, order]
            cur.execute("INSERT INTO jobs_variants (job_variants_id, job_id, img_asset_id, creation_order, status, "
                        "current_step) VALUES " + values, params)
            conn.commit()

    return run


WAYS = {"ye-run": ye_run_way, "per-row": per_row_way, "bare floor": floor_way}


def measure(database: Database, variants: int, jobs: int, rounds: int, workdir: Path) -> dict[str, float]:
    runs = {name: make(database, variants, workdir) for name, make in WAYS.items()}
    for run in runs.values():
        run(max(jobs // 10, 2))  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            count = jobs if name != "per-row" else max(jobs // 5, 5)
            start = time.perf_counter()
            run(count)
            rates[name].append(count / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


@contextlib.contextmanager
def target(url: str | None) -> Iterator[tuple[Database, str]]:
    if url is None:
        with embedded.server(ephemeral=True) as database:
            yield database, "embedded (ephemeral; fsync and synchronous_commit off)"
        return
    admin = Database(parse_url(url))
    name = f"ye_run_bench_{uuid.uuid4().hex[:8]}"
    with contextlib.closing(admin.connect(autocommit=True)) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
        cur.execute("SHOW synchronous_commit")
        sync = cur.fetchone()[0]
    database = admin.with_database(name)
    try:
        with contextlib.closing(database.connect()) as conn:
            schema.install(conn)
        yield database, f"external {admin.display} (synchronous_commit {sync})"
    finally:
        with contextlib.closing(admin.connect(autocommit=True)) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                        "AND pid <> pg_backend_pid()", (name,))
            cur.execute(f'DROP DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url")
    parser.add_argument("--jobs", type=int, default=200, help="jobs per round (per-row way: a fifth)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with target(args.database_url) as (database, label), tempfile.TemporaryDirectory() as workdir:
        print(f"server: {label}")
        print(f"{'variants':>8} {'ye-run':>10} {'bare floor':>11} {'per-row':>9} {'floor/ye-run':>13} "
              f"{'ye-run/per-row':>15}   (jobs/s, median of {args.rounds} rounds)")
        for variants, jobs in ((3, args.jobs), (50, max(args.jobs // 4, 10))):
            r = measure(database, variants, jobs, args.rounds, Path(workdir))
            print(f"{variants:>8} {r['ye-run']:>10.0f} {r['bare floor']:>11.0f} {r['per-row']:>9.0f} "
                  f"{r['bare floor'] / r['ye-run']:>12.2f}x {r['ye-run'] / r['per-row']:>14.1f}x")


if __name__ == "__main__":
    main()

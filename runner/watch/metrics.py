"""`--metrics-port`: the watch's Prometheus endpoint (prometheus_client, on a registry of its own).

A private `CollectorRegistry`, not the library's global one: two watches in one process (tests, an
embedding application) each export their own numbers. Everything is updated on the watch's thread
(a verdict sink, a reader of the writes, a turn hook); the HTTP server's thread only renders. Label
values are bounded: a step is one of the definition's, else `unknown` (the application may write
any name), or `none` for a violation of the whole job (its timeout).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, start_http_server

from runner.definition import Definition
from runner.errors import InputError
from runner.watch.judge import JobVerdict
from runner.watch.progress import jobs_at_steps

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from runner.watch.loop import Watch

PREFIX = "ye_run_watch_"
OUTCOMES = ("completed", "failed", "violated")
BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, float("inf"))
"""Seconds: from a quick stage (tens of ms) to an image generation's minutes."""
REFRESH = 1.0
"""Seconds between two counts of the jobs in flight per step (they walk every job in flight)."""


class WatchMetrics:
    """The metrics of one watch; `attach` wires them to it, `serve` exposes them."""

    def __init__(self, definition: Definition):
        self.definition = definition
        self.registry = CollectorRegistry()
        r = self.registry
        self.judged = Counter(PREFIX + "jobs_judged", "Jobs judged, by outcome: completed, failed (within the "
                              "contract), violated (the contract).", ["outcome"], registry=r)
        self.violations = Counter(PREFIX + "violations", "Violations of the contract, by kind and step (`none`: "
                                  "the whole job's).", ["kind", "step"], registry=r)
        self.in_flight = Gauge(PREFIX + "jobs_in_flight", "Jobs in flight, each at the step that holds it back "
                               "(its least advanced variant's, or its job row's job-level step).", ["step"],
                               registry=r)
        self.latency = Histogram(PREFIX + "step_latency_seconds", "A step's time from running to done (database "
                                 "clock), per step.", ["step"], buckets=BUCKETS, registry=r)
        self.writes = Counter(PREFIX + "writes_read", "History rows read.", registry=r)
        self.queries = Counter(PREFIX + "queries", "Statements watch sent to the database.", registry=r)
        self.reconnects = Counter(PREFIX + "reconnects", "Connections lost and opened again.", registry=r)
        self.last_read = Gauge(PREFIX + "last_read_timestamp_seconds", "When watch last read the history "
                               "(Unix time): an old value means it is stuck or waiting for the database.",
                               registry=r)
        ProcessCollector(registry=r)  # process_*: the watch's RSS, CPU, open files
        for outcome in OUTCOMES:
            self.judged.labels(outcome)
        for step in definition.names:
            self.in_flight.labels(step).set(0)
        self._steps: set[str] = set(definition.names)
        self._seen = _Seen()
        self._refreshed: float | None = None

    def attach(self, watch: Watch) -> None:
        """Count what `watch` judges and reads (call before it runs)."""
        watch.sinks.append(self.verdict)
        watch.turns.append(self.turn)

    def label(self, step: str | None) -> str:
        if step is None:
            return "none"
        return step if self.definition.has(step) else "unknown"

    def verdict(self, verdict: JobVerdict) -> None:
        self.judged.labels(verdict.outcome).inc()
        for failure in verdict.violations:
            self.violations.labels(str(failure.kind), self.label(failure.step)).inc()

    def step_latency(self, step: str, seconds: float) -> None:
        self.latency.labels(self.label(step)).observe(seconds)

    def turn(self, watch: Watch) -> None:
        """After each read: the counters catch up with the watch's, and (at most every REFRESH s) the gauge."""
        seen = _Seen(watch.writes, watch.source.queries, watch.source.reconnects)
        self.writes.inc(seen.writes - self._seen.writes)
        self.queries.inc(seen.queries - self._seen.queries)
        self.reconnects.inc(seen.reconnects - self._seen.reconnects)
        self._seen = seen
        self.last_read.set(time.time())
        now = time.monotonic()
        if self._refreshed is None or now - self._refreshed >= REFRESH:
            self._refreshed = now
            counts: dict[str, int] = {}
            for step, n in jobs_at_steps(watch.judge).items():
                label = self.label(step)
                counts[label] = counts.get(label, 0) + n
            self._steps |= counts.keys()
            for step in self._steps:
                self.in_flight.labels(step).set(counts.get(step, 0))

    def serve(self, host: str, port: int) -> MetricsServer:
        """The endpoint on host:port (0: a free port); one InputError when it cannot listen there."""
        if not 0 <= port <= 65535:
            raise InputError(f"--metrics-port {port}: a TCP port is 0 to 65535 (0: any free port)")
        try:
            server, _ = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise InputError(f"--metrics-port {port}: cannot listen on {host}:{port} ({exc.strerror or exc}); "
                             "give a free port, or 0 for any") from None
        return MetricsServer(server, host)


@dataclass(frozen=True)
class _Seen:
    writes: int = 0
    queries: int = 0
    reconnects: int = 0


@dataclass
class MetricsServer:
    server: WSGIServer
    host: str

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

"""Running the reference pipeline inside the runner's process (the embedded default).

Like a process supervisor, the host restarts the worker after it crashes (the `crash` fault);
the new worker resumes what the old one left running. Job ordinals and retry attempts survive
the restart, so faults keep targeting the same jobs.
"""

from __future__ import annotations

import logging
import threading

from runner.db.connect import Database
from runner.definition import DEFAULT, Definition
from runner.pipeline.config import PipelineConfig
from runner.pipeline.scope import Scope
from runner.pipeline.stats import WorkerStats
from runner.pipeline.worker import SharedState, Worker

log = logging.getLogger("ye_run.pipeline")


class PipelineHost:
    def __init__(self, database: Database, config: PipelineConfig, scope: Scope, restart_delay: float = 0.1,
                 definition: Definition = DEFAULT):
        self.database = database
        self.definition = definition
        self.config = config
        self.scope = scope
        self.restart_delay = restart_delay
        self.shared = SharedState()
        self.stats: list[WorkerStats] = []
        self.restarts = 0
        self._stopping = threading.Event()
        self._worker: Worker | None = None
        self._workers: list[Worker] = []
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        self._worker = self._new_worker()
        self._thread = threading.Thread(target=self._supervise, name="pipeline-host", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._worker is not None:
            self._worker.stop()
        if self._thread is not None:
            self._thread.join(10)

    @property
    def reconnects(self) -> int:
        return sum(w.reconnects for w in self._workers)

    def _new_worker(self) -> Worker:
        worker = Worker(self.database, self.config, self.scope, self.shared, name="ye-run pipeline (in-process)",
                        definition=self.definition)
        worker.start()
        self.stats.append(worker.stats)
        self._workers.append(worker)
        return worker

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            worker = self._worker
            assert worker is not None
            worker.wait()
            if self._stopping.is_set() or worker.crash is None:
                return
            worker.stop()
            if self._stopping.wait(self.restart_delay):
                return
            self.restarts += 1
            log.warning("pipeline: restarting the worker after its crash (restart %d)", self.restarts)
            try:
                self._worker = self._new_worker()
            except BaseException as exc:  # the database went away: the run's own checks will say so
                self.error = exc
                return

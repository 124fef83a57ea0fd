"""What the reference pipeline's slots work on: a step of a row, and what survives a worker's restart."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from runner.pipeline.scope import JobBook, VariantInfo

ROWS = {"v": ("jobs_variants", "job_variants_id"), "j": ("jobs", "job_id")}
"""The table and key column of each level's rows."""


class WorkerCrashed(Exception):
    """The injected `crash` fault: the worker stops in the middle of a step."""


@dataclass(frozen=True, slots=True)
class Task:
    info: VariantInfo
    """The variant; for a job-level step, the job (creation_order 0, variant_id = job_id)."""
    step: str
    expect: tuple[str, str]
    """The state the row must be in for this task to claim it."""
    resumed: bool = False
    """A step picked up again (after a crash or a retry): entry faults (skip, crash) do not reapply."""
    level: str = "v"
    """'v': a variant row; 'j': the job row."""
    recheck: bool = False
    """Requeued after a lost connection: whether its writes committed is read back before it goes on."""

    @property
    def row_id(self) -> str:
        return self.info.variant_id


@dataclass
class SharedState:
    """What survives a worker restart inside one process (the in-process host keeps it)."""

    book: JobBook = field(default_factory=JobBook)
    attempts: dict[tuple[str, str], int] = field(default_factory=dict)
    went_back: set[tuple[str, str]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def who(task: Task) -> str:
    return f"variant #{task.info.creation_order}" if task.level == "v" else "the job row"

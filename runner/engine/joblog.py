"""A run's jobs, in seeding order: the ones still followed in memory, the judged ones on disk.

A nightly soak judges tens of thousands of jobs, each with dozens of transitions; keeping them
all would make the runner's memory grow with the run. Once more than `keep` judged jobs are in
memory, the oldest are pickled to an anonymous temporary file (O_TMPFILE: it has no name, so
nothing else can write to it, and it is gone when the run is) and read back one at a time by
whoever iterates (the JSON, JUnit and HTML writers). The summary's counts and which jobs failed
are kept aside, so the verdict and the summary never read the disk; only the failing jobs are
read back for their failures' text. Small runs never touch the disk. When
the disk refuses (no TMPDIR, a full disk), jobs simply stay in memory.

A job read back is a copy: the run spills a job only once it is judged and never changes it
after that.
"""

from __future__ import annotations

import errno
import os
import pickle
import tempfile
from array import array
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, overload

from runner.outcomes import Outcome
from runner.trace import Failure


class JobResult(Protocol):
    """What the log needs of a judged job (engine.results.JobResult; a protocol here, so the log does not import
    the results it is part of)."""

    ordinal: int
    outcome: Outcome
    failures: list[Failure]
    retries: dict[int, dict[str, int]]
    seeded: Any


@dataclass
class Tally:
    """What a scenario's summary counts, over every job."""

    outcomes: Counter[Outcome] = field(default_factory=Counter)
    variants: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    """Step -> retries seen, over every row."""

    def add(self, job: JobResult) -> None:
        self.outcomes[job.outcome] += 1
        self.variants += len(job.seeded.variants)
        for counts in job.retries.values():
            for step, n in counts.items():
                self.retries[step] = self.retries.get(step, 0) + n


KEEP = 64
"""Judged jobs kept in memory before the oldest go to disk: small runs (tests, smoke) never spill."""


class JobLog:
    def __init__(self, jobs: Iterable[JobResult] = (), keep: int | None = None):
        self.keep = KEEP if keep is None else keep
        self._memory: dict[int, JobResult] = {}
        """Position -> job, for the jobs not on disk."""
        self._spans = array("q")
        """Per position: offset and length in the file (-1, -1 while in memory)."""
        self._judged: deque[int] = deque()
        self._file: IO[bytes] | None = None
        self._end = 0
        self._disk_failed = False
        self._spilled_tally = Tally()
        self._failing = array("q")
        """Positions of the spilled jobs that have failures: only those are read back for their text (a failing
        night's diffs are long), and the verdict needs only whether there are any."""
        for job in jobs:
            self.append(job)

    def append(self, job: JobResult) -> None:
        self._memory[len(self)] = job
        self._spans.extend((-1, -1))

    def judged(self, job: JobResult) -> None:
        """The job will not change again: it may go to disk once `keep` newer judged jobs are in memory."""
        position = job.ordinal - 1
        if self._memory.get(position) is not job:
            position = next(i for i, j in self._memory.items() if j is job)
        self._judged.append(position)
        while len(self._judged) > self.keep and not self._disk_failed:
            self._spill(self._judged.popleft())

    def in_memory(self) -> list[JobResult]:
        """The jobs not spilled (every unjudged one among them), for the run's last touches."""
        return [self._memory[i] for i in sorted(self._memory)]

    def tally(self) -> Tally:
        """Counts over every job, without reading the disk."""
        out = Tally(Counter(self._spilled_tally.outcomes), self._spilled_tally.variants,
                    dict(self._spilled_tally.retries))
        for job in self.in_memory():
            out.add(job)
        return out

    def has_failures(self) -> bool:
        """Whether any job failed an assertion, without reading the disk."""
        return bool(self._failing) or any(job.failures for job in self._memory.values())

    def failures(self) -> list[Failure]:
        """Every job's failures, in job order (the spilled failing jobs are read back)."""
        found = [f for i in self._failing for f in self._load(i).failures]
        found += [f for job in self.in_memory() for f in job.failures]
        return sorted(found, key=lambda f: f.job_ordinal or 0)

    @property
    def spilled(self) -> int:
        return len(self) - len(self._memory)

    def _spill(self, position: int) -> None:
        data = pickle.dumps(self._memory[position], protocol=pickle.HIGHEST_PROTOCOL)
        try:
            if self._file is None:
                self._file = tempfile.TemporaryFile(prefix="ye-run-jobs-")
            _write_all(self._file.fileno(), data, self._end)
        except OSError:
            self._disk_failed = True  # memory from now on; never a lost or a half-written job
            return
        self._spans[2 * position], self._spans[2 * position + 1] = self._end, len(data)
        self._end += len(data)
        job = self._memory.pop(position)
        if job.failures:
            self._failing.append(position)
        self._spilled_tally.add(job)

    def _load(self, position: int) -> JobResult:
        job = self._memory.get(position)
        if job is not None:
            return job
        assert self._file is not None
        offset, length = self._spans[2 * position], self._spans[2 * position + 1]
        data = os.pread(self._file.fileno(), length, offset)
        if len(data) != length:
            raise OSError(f"the run's job file lost job {position + 1} ({len(data)} of {length} bytes read back)")
        return pickle.loads(data)  # our own file (it has no name), written whole above

    def __len__(self) -> int:
        return len(self._spans) // 2

    def __iter__(self) -> Iterator[JobResult]:
        return (self._load(i) for i in range(len(self)))

    @overload
    def __getitem__(self, index: int) -> JobResult: ...

    @overload
    def __getitem__(self, index: slice) -> list[JobResult]: ...

    def __getitem__(self, index: int | slice) -> JobResult | list[JobResult]:
        if isinstance(index, slice):
            return [self._load(i) for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError("job index out of range")
        return self._load(index % len(self))

    def __bool__(self) -> bool:
        return len(self) > 0

    def __repr__(self) -> str:
        return f"JobLog({len(self)} jobs, {self.spilled} on disk)"


def _write_all(fd: int, data: bytes, offset: int) -> None:
    """pwrite until every byte is down: a nearly full disk writes part and says so only by the count."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.ENOSPC, "no space left for the run's job file")
        view, offset = view[written:], offset + written

"""What a watch says: a console line per violation (with the checker's expected-vs-observed diff), one JSON
line per judged job, and the closing total."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

from runner.report.safe import terminal
from runner.watch.judge import JobVerdict


def _who(verdict: JobVerdict) -> str:
    tenant = f"tenant {verdict.tenant_id}" if verdict.tenant_id is not None else "tenant ? (job row gone)"
    return tenant + (" [seeded by ye-run]" if verdict.seeded else "")


def violation_lines(verdict: JobVerdict) -> list[str]:
    """The violations of a job: a headline each (kind, what it broke), then the diff of the first."""
    out = []
    for index, failure in enumerate(verdict.violations):
        out.append(f"VIOLATION [{failure.kind}] {_who(verdict)}: {terminal(failure.message)} "
                   f"(broke {verdict.broke[index]})")
        if failure.detail and index == 0:
            out += [terminal(line) for line in failure.detail.splitlines()]
    return out


def failed_line(verdict: JobVerdict) -> str:
    return (f"failed    {_who(verdict)}: job {verdict.job_id} ended ({verdict.end_state[0]}, {verdict.end_state[1]}) "
            "within the contract" if verdict.end_state else f"failed    {_who(verdict)}: job {verdict.job_id}")


def record(verdict: JobVerdict) -> dict:
    """One judged job as a JSON object (one line of --jsonl)."""
    return {
        "job_id": verdict.job_id, "tenant_id": verdict.tenant_id, "seeded_by_ye_run": verdict.seeded,
        "outcome": verdict.outcome, "variants": verdict.variants,
        "first_write": _time(verdict.first_write), "last_write": _time(verdict.last_write),
        "job_row": list(verdict.end_state) if verdict.end_state else None,
        "retries": {str(order): steps for order, steps in verdict.retries.items()},
        "judged_before_as": verdict.after_end,
        "violations": [{"kind": str(f.kind), "step": f.step, "variant": f.creation_order,
                        "variant_id": f.variant_id, "message": f.message, "detail": f.detail,
                        "broke": verdict.broke[i]} for i, f in enumerate(verdict.violations)],
    }


def _time(stamp: datetime | None) -> str | None:
    return stamp.isoformat() if stamp is not None else None


class JsonLines:
    """--jsonl FILE: a line per judged job, flushed as it is judged (a watch may be killed at any moment)."""

    def __init__(self, path: Path):
        self.path = path
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def __call__(self, verdict: JobVerdict) -> None:
        self._file.write(json.dumps(record(verdict), ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


@dataclass
class Totals:
    """The closing count of a watch."""

    outcomes: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    seeded: int = 0
    in_flight: int = 0
    at_steps: Counter[str] = field(default_factory=Counter)
    outside: int = 0
    """Jobs seen but not judged: created before the window, or another tenant's."""
    writes: int = 0
    queries: int = 0
    reconnects: int = 0
    gave_up: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def judged(self) -> int:
        return sum(self.outcomes.values())

    @property
    def violations(self) -> int:
        return sum(self.kinds.values())

    def lines(self) -> list[str]:
        o = self.outcomes
        head = (f"watch: {self.judged} job(s) judged: {o['completed']} completed, {o['failed']} failed (within the "
                f"contract), {o['violated']} violated the contract")
        out = [head + (f"; {self.seeded} of them seeded by ye-run" if self.seeded else "")]
        if self.kinds:
            out.append(f"  {self.violations} violation(s): " + ", ".join(f"{n} {k}" for k, n in
                                                                       sorted(self.kinds.items())))
        if self.in_flight:
            steps = ", ".join(f"{step} {n}" for step, n in self.at_steps.most_common(6))
            out.append(f"  {self.in_flight} job(s) still in flight, not judged (rows at: {steps})")
        if self.outside:
            out.append(f"  {self.outside} job(s) outside the scope (created before the window, or another tenant's)")
        if self.gave_up:
            out.append(f"  {self.gave_up} history write(s) still uncommitted when the window closed: not read")
        out += [f"  note: {note}" for note in self.notes]
        out.append(f"  {self.writes} write(s) read in {self.queries} quer(ies); {self.reconnects} reconnect(s)")
        return out


def console(echo: Callable[[str], None], show_failed: bool = True) -> Callable[[JobVerdict], None]:
    """A sink printing violations (and failed jobs) as they are judged."""

    def sink(verdict: JobVerdict) -> None:
        if verdict.violated:
            for line in violation_lines(verdict):
                echo(line)
        elif verdict.outcome == "failed" and show_failed:
            echo(failed_line(verdict))

    return sink

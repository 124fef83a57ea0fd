"""`--reruns N`: a failed scenario is run again, up to N more times; a pass after a failure is flaky.

Each attempt is a run of its own (its run id, its rows, its registry entry). A failed attempt
with reruns left is said in a note, not as a verdict, so every reporter hears one verdict per
scenario: the last attempt's, `flaky` when it passed after a failure, with the earlier attempts
attached. Only a failure is run again: an error (a lost database, a bug) or an interrupt is not.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from runner.engine.events import Event, Note, ScenarioFinished, ScenarioRef
from runner.engine.results import Attempt, ScenarioResult, brief
from runner.outcomes import Outcome


class Attempts:
    """One scenario's attempts: hands each run the emitter that holds back a verdict to be retried."""

    def __init__(self, reruns: int, put: Callable[[Event], None], stop: threading.Event):
        self.reruns = reruns
        self.put = put
        self.stop = stop
        self.earlier: list[Attempt] = []

    def more(self, result: ScenarioResult) -> bool:
        """Whether this attempt's verdict is retried: it failed, reruns are left, and nobody stopped the suite."""
        return result.outcome == Outcome.FAILED and len(self.earlier) < self.reruns and not self.stop.is_set()

    def emitter(self) -> Callable[[Event], None]:
        """The events of the next attempt: its verdict becomes a note when it will be retried, and is flaky when it
        passed after a failure."""
        def emit(event: Event) -> None:
            if isinstance(event, ScenarioFinished):
                event = self._verdict(event.result)
            self.put(event)

        return emit

    def _verdict(self, result: ScenarioResult) -> Event:
        if self.more(result):
            tried = len(self.earlier) + 1
            reason = _reasons(result)[0] if _reasons(result) else "failed"
            return Note(ScenarioRef(result.name, result.run_id, result.worker),
                        f"attempt {tried} of {self.reruns + 1} failed ({reason}); running it again (--reruns)")
        return ScenarioFinished(self.final(dataclasses.replace(result)))

    def record(self, result: ScenarioResult) -> None:
        """An attempt that will be retried, kept for the final verdict."""
        self.earlier.append(Attempt(result.run_id, result.outcome, round(result.duration, 6),
                                    tuple(_reasons(result))))

    def final(self, result: ScenarioResult) -> ScenarioResult:
        """The last attempt's result with the earlier ones attached; a pass after a failure is flaky."""
        result.attempts = list(self.earlier)
        if self.earlier and result.outcome == Outcome.PASSED:
            result.outcome = Outcome.FLAKY
        return result


def _reasons(result: ScenarioResult) -> list[str]:
    """What made an attempt fail, one line each, without the scenario's name and row ids (the attempt's run id
    finds them): its failures' first lines, else its error's first line."""
    lines = [brief(failure, result.name) for failure in result.all_failures]
    return lines or ([result.error.splitlines()[0]] if result.error else [])

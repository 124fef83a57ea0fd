"""What the JUnit, JSON and HTML reporters share: a path, and one file written when the session finishes.

They are handlers like the console: handed every event, they keep what the session's first event
says of a suite refused before it started (files that failed to load, a refused selection, an
interrupt), and render it with the results, so a CI job finds a report whatever ended the run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

from runner.engine.events import Event, Refusal, SessionStarted

if TYPE_CHECKING:
    from runner.engine.session import SessionOutcome


class FileReporter(ABC):
    """Started and handed events like every reporter; writes its file once, at the end, whatever ended the run."""

    def __init__(self, path: Path):
        self.path = path
        self.refusal: Refusal | None = None

    def start(self) -> None:
        """Nothing to write until the end."""

    def handle(self, event: Event) -> None:
        """Keeps why a suite never started; the results hold everything else the file says."""
        if isinstance(event, SessionStarted):
            self.refusal = event.refusal

    def finish(self, outcome: SessionOutcome) -> None:
        self.save(outcome)

    @abstractmethod
    def save(self, outcome: SessionOutcome) -> None:
        """The whole file, from the outcome and what the events said (each reporter its own format)."""

    def error(self, outcome: SessionOutcome) -> str | None:
        """What stopped the session, in words: the refusal its first event carried, else the outcome's error."""
        if self.refusal is not None:
            return self.refusal.message
        return None if outcome.error is None else str(outcome.error)

    def invalid(self) -> dict[str, list[str]]:
        """The files that failed to load, each with its located problems (file -> lines), in the problems' order."""
        found: dict[str, list[str]] = {}
        for problem in self.refusal.problems if self.refusal else ():
            found.setdefault(problem.file, []).append(str(problem))
        return found

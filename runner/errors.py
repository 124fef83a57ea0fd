"""The one family of user-facing errors; each carries the exit code the CLI returns.

Only the CLI catches these. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class ExitCode:
    PASSED = 0
    FAILED = 1
    BAD_INPUT = 2
    INFRASTRUCTURE = 3
    BUG = 70
    """EX_SOFTWARE: ye-run itself failed; the traceback was written to a file."""
    INTERRUPTED = 130


@dataclass(frozen=True, slots=True)
class Problem:
    """One located complaint about an input file: `file:line:col: json.path: message`."""

    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.path}: {self.message}"


class YeRunError(Exception):
    exit_code = ExitCode.FAILED


class InputError(YeRunError):
    """Bad input or usage: a broken scenario, a missing image, a bad option."""

    exit_code = ExitCode.BAD_INPUT


class ScenarioError(InputError):
    """A scenario file is invalid; carries every problem found, not only the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.col, p.path, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


class Refused(YeRunError):
    """Scenarios refused before anything was seeded (by the database's catalog, the tenant guard, an image):
    every reason, one per line, each located where it can be; the exit code of the worst."""

    def __init__(self, reasons: list[YeRunError]):
        self.lines = [line for reason in reasons for line in str(reason).splitlines()]
        self.exit_code = max(reason.exit_code for reason in reasons)
        super().__init__("\n".join(self.lines))


class Unavailable(YeRunError):
    """The target lacks what a scenario needs (a table, a column, the reference pipeline), and it is not a typo:
    the scenario is not run, with this reason, and the others run. Not a failure of the suite."""

    exit_code = ExitCode.PASSED


class InfrastructureError(YeRunError):
    """The database is unreachable, refuses us, or lacks what the runner needs."""

    exit_code = ExitCode.INFRASTRUCTURE


class SchemaMissingError(InfrastructureError):
    """The database answers but lacks tables, columns or triggers the runner needs."""


class GuardError(InputError):
    """A write or delete was refused to protect rows that do not look like test data."""


class InternalError(YeRunError):
    """A bug in ye-run (an exception nobody expected): reported in one line, never as a pass."""

    exit_code = ExitCode.BUG


class Interrupted(YeRunError):
    exit_code = ExitCode.INTERRUPTED

"""The pytest plugin: scenarios as test items, and fixtures to run scenarios from Python tests.

Thin, as pytest's own example of non-Python tests: `pytest_collect_file -> ScenarioFile ->
ScenarioItem.setup() -> a Session of one scenario`, the CLI's session: its reference-pipeline
default, preflight, connection budget, not-run rules and verdict. Files are read as the CLI reads
them (`scenario.suite`). Opt-in: a YAML file is collected only under a path listed in the
`ye_run_paths` ini option, or with `--ye-run`, so a repository full of other YAML collects
nothing. Scenario tags become markers (registered, so `--strict-markers` is content); two
scenarios of one name are a collection error of the second file, as in the CLI. One database per
pytest process: the one given (`--ye-run-database-url` / `YE_DATABASE_URL`), else the embedded
server, which pytest-xdist workers share as separate ye-run processes share it (`db.embedded`: one
server per data directory, started under a file lock, stopped by the last process to leave), so
`-n 4` starts one server, not four. Workers share a database either way and run scenarios side by
side, so their selection is checked as `ye-run run -j N` checks its own. A failure's summary line
and JUnit message are its short reasons (`ScenarioResult.reasons`, no row ids); the long report is
the CLI's located text.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.errors import ScenarioError, YeRunError
from runner.outcomes import Outcome

SUFFIXES = (".yaml", ".yml")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ye-run", "ye-run scenarios")
    group.addoption("--ye-run", action="store_true", help="Collect ye-run scenario files (*.yaml, *.yml) from the "
                                                           "paths given, as if they were listed in ye_run_paths.")
    group.addoption("--ye-run-database-url", metavar="URL", default=os.environ.get("YE_DATABASE_URL"),
                    help="External PostgreSQL for scenarios (env YE_DATABASE_URL). Default: the embedded server.")
    group.addoption("--ye-run-reference-pipeline", action="store_true", default=None,
                    help="Run the built-in reference pipeline in-process (default: on for the embedded server).")
    group.addoption("--ye-run-no-reference-pipeline", action="store_false", dest="ye_run_reference_pipeline",
                    help="Do not run the reference pipeline (a real one drives the jobs).")
    group.addoption("--ye-run-observe", choices=("auto", "history", "listen"), default="auto",
                    help="How transitions are observed, as `ye-run run --observe`.")
    group.addoption("--ye-run-tenant-pattern", metavar="REGEX", default=os.environ.get("YE_TENANT_PATTERN"),
                    help="The tenant guard's pattern (env YE_TENANT_PATTERN).")
    group.addoption("--ye-run-force", action="store_true", help="Write to a tenant that fails the tenant guard.")
    group.addoption("--ye-run-pipeline-file", metavar="FILE", default=os.environ.get("YE_PIPELINE_FILE"),
                    help="The pipeline definition (env YE_PIPELINE_FILE).")
    group.addoption("--ye-run-var", action="append", default=[], metavar="NAME=VALUE",
                    help="A value for ${NAME} in scenario files (repeatable).")
    parser.addini("ye_run_paths", "Paths (relative to the rootdir) whose *.yaml files are ye-run scenarios.",
                  type="paths", default=[])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ye_run: a ye-run scenario (every collected scenario has it)")
    config._ye_run = Runtime(config)  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    runtime = getattr(config, "_ye_run", None)
    if runtime is not None:
        runtime.close()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """xdist workers share one database (the one given, or the one embedded server) and run scenarios side by side:
    refuse, before a database opens, one that would seed a literal row another seeds (every worker selects the whole
    run's items, so each finds the clash)."""
    if not hasattr(config, "workerinput"):
        return
    from runner.scenario.suite import isolation_clashes

    chosen = {id(item.scenario): item for item in items if isinstance(item, ScenarioItem)}
    for scenario, line in isolation_clashes([item.scenario for item in chosen.values()]):
        chosen[id(scenario)].refused.append(line)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """A scenario that failed or stopped is summed up by its short reason, at the line of what it broke: the summary
    line (`FAILED ...::planner-slo - planner: p95 latency ...`), `--tb=line` and JUnit's `message` read it, and xdist
    carries it from the worker; the long report stays the located, full text."""
    report = yield
    stopped = call.excinfo.value if call.excinfo is not None else None
    crash = getattr(report.longrepr, "reprcrash", None)
    if isinstance(stopped, ScenarioStopped) and crash is not None:  # in place: a chained repr holds it twice
        crash.path, crash.message = str(item.path), stopped.reason
        crash.lineno = stopped.line or item.reportinfo()[1] + 1  # else the scenario's name
    return report


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in SUFFIXES or file_path.name.startswith("_"):
        return None
    config = parent.config
    roots = [Path(p) for p in config.getini("ye_run_paths")]
    if config.getoption("ye_run") or any(file_path.is_relative_to(root) for root in roots):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class Runtime:
    """What every scenario of a pytest process shares: the settings from the options, and one database."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self._lock = threading.Lock()
        self._stack = contextlib.ExitStack()
        self._database: Any = None
        self._loader: Any = None

    def loader(self):  # type: ignore[no-untyped-def]
        """The CLI's reading of files, made at first use: the definition and `--ye-run-var`s, and the names met so far
        (a second scenario of one name is a collection error)."""
        if self._loader is None:
            from runner.scenario.suite import Loader

            file = self.config.getoption("ye_run_pipeline_file")
            self._loader = Loader(Path(file) if file else None, self.config.getoption("ye_run_var"))
        return self._loader

    def database(self):  # type: ignore[no-untyped-def]
        """The database, opened at first use: the URL given, else the embedded server, joined if another process
        (an xdist worker, a `ye-run`) started it; the last process to leave stops it."""
        with self._lock:
            if self._database is None:
                from runner.db.target import open_database

                self._database = self._stack.enter_context(open_database(self.config.getoption("ye_run_database_url")))
            return self._database

    def options(self):  # type: ignore[no-untyped-def]
        """The session's options from pytest's (the reference-pipeline default is the session's to decide)."""
        from runner.engine.run import RunSettings
        from runner.engine.session import SessionOptions

        settings = RunSettings(observe=self.config.getoption("ye_run_observe"),
                               tenant_pattern=self.config.getoption("ye_run_tenant_pattern"),
                               force=self.config.getoption("ye_run_force"))
        return SessionOptions(self.config.getoption("ye_run_database_url"), settings=settings,
                              reference_pipeline=self.config.getoption("ye_run_reference_pipeline"))

    def run(self, scenario):  # type: ignore[no-untyped-def]
        """Run the scenario in a session of its own on this process's database: the CLI's checks, budget and verdict.
        Returns its result, the error that ended it (or None) and its notes; skips it when it is not run here."""
        from runner.engine.session import Session

        notes = Notes()
        outcome = Session([scenario], self.options(), [notes], database=self.database()).run()
        if outcome.error is not None:
            raise outcome.error
        (result,) = outcome.results
        if result.outcome == Outcome.NOT_RUN:  # the target lacks what it needs: skipped, as the CLI says not run
            pytest.skip(result.note)
        return result, outcome.ended.get(scenario.name), notes.texts

    def close(self) -> None:
        self._stack.close()


class Notes:
    """The reporter of an item's session: the notes its run gave (the failure text shows them, as the console does)."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def start(self) -> None:
        """Nothing to open."""

    def handle(self, event: object) -> None:
        from runner.engine.events import Note

        if isinstance(event, Note):
            self.texts.append(event.text)

    def finish(self, outcome: object) -> None:
        """Nothing to write."""


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[ScenarioItem]:
        runtime: Runtime = self.config._ye_run  # type: ignore[attr-defined]
        try:
            scenarios = runtime.loader().unique(self.path)
        except ScenarioError as exc:
            raise self.CollectError("\n".join(str(p) for p in exc.problems)) from None
        except YeRunError as exc:
            raise self.CollectError(str(exc)) from None
        for scenario in scenarios:
            item = ScenarioItem.from_parent(self, name=scenario.name, scenario=scenario)
            item.add_marker("ye_run")
            for tag in scenario.tags:
                self.config.addinivalue_line("markers", f"{tag}: ye-run scenario tag")
                item.add_marker(tag)
            yield item


class ScenarioStopped(pytest.fail.Exception):  # type: ignore[name-defined,misc]
    """A scenario failed (in the test) or was stopped (in setup or teardown: pytest's ERROR): the message is the long
    report, located, with no Python traceback (`pytrace=False`); `reason` its one line for the summary and JUnit's
    `message`; `line` where in the scenario file it points."""

    def __init__(self, text: str, reason: str, line: int | None = None):
        super().__init__(text, pytrace=False)
        self.reason = reason
        self.line = line


class ScenarioItem(pytest.Item):
    """One scenario. It runs in setup, so what stops it being judged is pytest's ERROR; the test is its verdict."""

    def __init__(self, *, scenario: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.scenario = scenario
        self._ran: tuple[Any, list[str]] | None = None
        self.refused: list[str] = []
        """Why the selection refuses it (side by side with a scenario seeding the same literal row)."""

    def setup(self) -> None:
        """Run the scenario. A refusal (tenant guard, catalog), a lost database or a failed cleanup ends it as
        `error`, as the CLI says; pytest reports an exception in setup as an error, not as a failure."""
        runtime: Runtime = self.config._ye_run  # type: ignore[attr-defined]
        if self.refused:  # found at selection, before a database opens
            raise ScenarioStopped("\n".join(self.refused), *self._unlocated(_first_line(self.refused[0])))
        try:
            result, _, notes = runtime.run(self.scenario)
        except YeRunError as exc:  # its lines are located where they can be
            reason, line = self._unlocated(_first_line(str(exc)))
            raise ScenarioStopped(f"{self.scenario.name}: {exc}", reason, line) from None
        self.user_properties.append(("run_id", result.run_id))
        self._ran = (result, notes)
        if result.outcome == Outcome.ERROR:
            raise ScenarioStopped(f"{self._origin()}: {failure_text(result, notes)}", short_reason(result))

    def teardown(self) -> None:
        """A cleanup policy that could not be applied (a deadlock, a refused delete) is an error of teardown, as
        pytest reports a test that ran and then could not clean up; the verdict stands."""
        result = self._ran[0] if self._ran else None
        failed = getattr(result, "cleanup_error", None)  # set by the verdict-first cleanup (engine/teardown.py)
        if failed and result.outcome != Outcome.ERROR:  # an error's text already says it
            raise ScenarioStopped(f"{self._origin()}: {self.scenario.name}: {failed}",
                                  f"cleanup: {_first_line(failed)}")

    def runtest(self) -> None:
        assert self._ran is not None
        result, notes = self._ran
        if result.outcome.passing:
            return
        line = expectation_line(self.scenario, result)
        where = f"{self.path}:{line}: " if line else ""
        raise ScenarioStopped(f"{where}{failure_text(result, notes)}", short_reason(result), line)

    def reportinfo(self) -> tuple[Path, int, str]:
        origin = self.scenario.source.marks.get("$.name") or self.scenario.source.marks.get("$")
        return self.path, (origin.line - 1) if origin else 0, f"ye-run scenario: {self.name}"

    def _unlocated(self, text: str) -> tuple[str, int | None]:
        """A line located in this item's own file, without its place (the summary line names the file; the crash
        line keeps the line number): `$.expect.sql[0].query: ...`, the same on every machine and checkout."""
        found = re.match(rf"{re.escape(str(self.path))}:(\d+)(?::\d+)?: ", text)
        return (text[found.end():], int(found.group(1))) if found else (text, None)

    def _origin(self) -> str:
        """`file:line` of the scenario's name, where an error that belongs to no expectation points."""
        return f"{self.path}:{self.reportinfo()[1] + 1}"


def failure_text(result: Any, notes: list[str]) -> str:
    """The CLI's words: every failure (breadcrumb, time vs limit, expected-vs-observed diff), then the summary."""
    from runner.report.summary import summary

    parts = [f"FAIL {failure.text()}" for failure in result.all_failures]
    parts += [f"note: {note}" for note in notes]
    return "\n".join(parts + summary(result))


def short_reason(result: Any, shown: int = 3) -> str:
    """What failed, in one line and without row ids, so a night's failure groups with the last one's:
    `planner: p95 latency 310ms is over the limit 100ms (n=3)`, the first few joined by `; `."""
    reasons = result.reasons() or [str(result.outcome)]
    more = f"; +{len(reasons) - shown} more" if len(reasons) > shown else ""
    return "; ".join(reasons[:shown]) + more


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def expectation_line(scenario: Any, result: Any) -> int | None:
    """The line of the expectation the first failure broke: the run placed it (`Failure.origin`)."""
    failures = result.all_failures
    if not failures:
        return None
    origin = failures[0].origin or scenario.source.marks.get("$.name")
    return origin.line if origin else None


@pytest.fixture(scope="session")
def ye_run_database(pytestconfig: pytest.Config):  # type: ignore[no-untyped-def]
    """The database scenarios run against: `--ye-run-database-url`, else the embedded server (started once)."""
    return pytestconfig._ye_run.database()  # type: ignore[attr-defined]


@pytest.fixture
def ye_run_scenario(pytestconfig: pytest.Config, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run a scenario from a path, YAML text or a dict, with top-level overrides; returns the ScenarioResult
    (its jobs, traces, latencies and seeded rows) for further assertions. Raises on invalid input."""
    runtime: Runtime = pytestconfig._ye_run  # type: ignore[attr-defined]

    def run_scenario(source: str | Path | dict, **overrides: Any):  # type: ignore[no-untyped-def]
        import yaml

        if isinstance(source, dict) or overrides:
            doc = dict(source) if isinstance(source, dict) else None
            if doc is None:
                text = Path(source).read_text(encoding="utf-8") if _is_path(source) else str(source)
                doc = yaml.safe_load(text) or {}
            doc.update(overrides)
            source = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
        path = Path(source) if _is_path(source) else tmp_path / "scenario.yaml"
        if path.parent == tmp_path:
            path.write_text(str(source), encoding="utf-8")
        (scenario,) = runtime.loader().instances(path)
        result, error, _ = runtime.run(scenario)
        if error is not None:
            raise error
        return result

    return run_scenario


def _is_path(source: Any) -> bool:
    return isinstance(source, Path) or (isinstance(source, str) and "\n" not in source
                                         and source.endswith(SUFFIXES) and Path(source).is_file())

"""How much one run asks of the database: statements, transactions and connections, counted, never timed.

Issue 22: a smoke-like run (one job, 3 variants, the whole pipeline, cleanup) once sent 184 statements over 6
connections with 51 commits. The bounds below pin what batching brought it to; a change that sends one
statement per row again, reads the history once per notification, or opens a connection per phase fails here.
"""

from __future__ import annotations

from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest

from runner.db.connect import Database
from runner.engine.results import Outcome
from tests.engine.helpers import run

SMOKE = """\
name: load
tenant: {id: ye_load_test}
variants: 3
mode: once
simulate_img_gen: true
cleanup: always
expect:
  final:
    variant: {step: iou_eval, status: done}
    job: {step: instagram_feed_gen, status: done}
"""


class _Counted(psycopg2.extensions.connection):
    """A connection that counts the transactions it commits (an explicit COMMIT: BEGIN and COMMIT round trips)."""

    committed = 0

    def commit(self) -> None:
        if self.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            type(self).committed += 1
        super().commit()


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The application_name of every connection ye-run (not the in-process pipeline) opens."""
    names: list[str] = []
    real = psycopg2.connect
    _Counted.committed = 0

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        name = kwargs.get("application_name", "")
        if name.startswith("ye-run") and not name.startswith("ye-run pipeline"):
            names.append(name)
            kwargs["connection_factory"] = _Counted
        return real(*args, **kwargs)

    monkeypatch.setattr(psycopg2, "connect", counting)
    return names


def test_a_smoke_run_stays_light_on_the_database(db: Database, tmp_path: Path, opened: list[str]) -> None:
    outcome = run(db, tmp_path, SMOKE)
    result = outcome.result
    assert result.outcome == Outcome.PASSED, [f.message for f in result.all_failures]
    assert result.cleanup is not None and result.cleanup.total > 0  # the cleanup ran on the same connection
    assert len(opened) <= 2, opened  # the run's own connection and the LISTEN one: none per phase
    # Up to the verdict, on the run's own connection (the observer's reads are left out: how many there are
    # depends on how the pipeline's writes fall in time): catalog, registry, seed, img_gen, job row, verdict.
    own = result.statements - result.observation.queries
    assert own <= 10, own
    assert _Counted.committed <= 3, _Counted.committed  # seed and cleanup; single statements commit on their own


def test_a_one_scenario_suite_opens_two_connections_at_most(db: Database, tmp_path: Path,
                                                            opened: list[str]) -> None:
    """The session's own (it checks every scenario, reads the server's slots, then LISTENs for every scenario)
    and the scenario's: no probe, no preflight, budget or LISTEN connection of their own."""
    from click.testing import CliRunner

    from runner.cli.main import cli

    path = tmp_path / "load.yaml"
    path.write_text(SMOKE, encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", str(path), "--reference-pipeline",
                                      "--database-url", db.url.render_as_string(hide_password=False)])
    assert result.exit_code == 0, result.output
    assert len(opened) <= 2, opened
    assert "ye-run session" in opened
    assert "ye-run listen" not in opened  # the session's connection LISTENs

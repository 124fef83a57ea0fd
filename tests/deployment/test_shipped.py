"""The shipped scenarios against the deployment-like harness: each passes or is not run, with its reason; the
deployment's duplicate trigger is caught, and said plainly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner import resources
from runner.db.connect import Database
from tests.deployment.listener import DeploymentListener, Options

ROOT = Path(__file__).resolve().parents[2]


def _run(db: Database, tmp_path: Path, *paths: str) -> tuple[subprocess.CompletedProcess, dict]:
    """ye-run in a process of its own, as beside a real deployment (not sharing the harness's interpreter)."""
    report = tmp_path / "run.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CI": "true"}
    done = subprocess.run([sys.executable, "-m", "runner", "run", *paths, "--database-url",
                           db.url.render_as_string(hide_password=False), "--json", str(report), "-j", "2",
                           "--asset-dir", str(tmp_path / "assets")], env=env, capture_output=True, text=True,
                          timeout=600)
    doc = json.loads(report.read_text())
    resources.validator("report.schema.json").validate(doc)
    return done, doc


@pytest.mark.parametrize("listener_options", [Options(workers=2, recover_lagging=False, duplicate_trigger=False)])
def test_every_shipped_scenario_passes_or_is_not_run_against_the_fixed_deployment(
        deployment_db: Database, deployment_listener: DeploymentListener, tmp_path: Path):
    done, doc = _run(deployment_db, tmp_path, str(ROOT / "scenarios"))
    outcomes = {s["name"]: (s["outcome"], s.get("note") or "") for s in doc["scenarios"]}
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(outcome in ("passed", "not_run") for outcome, _ in outcomes.values()), outcomes
    assert outcomes["smoke"][0] == "passed"
    not_run = {name: note for name, (outcome, note) in outcomes.items() if outcome == "not_run"}
    assert not_run and all(note.startswith("not run: ") for note in not_run.values())
    assert all(s["cleanup"]["applied"] or s["outcome"] == "not_run" or s["cleanup"]["policy"] == "never"
               for s in doc["scenarios"])


@pytest.mark.parametrize("listener_options", [Options(workers=1, recover_lagging=False, duplicate_trigger=True,
                                                      job_latency=1.0)])
def test_smoke_fails_only_for_the_deployments_duplicate_trigger(deployment_db: Database,
                                                                deployment_listener: DeploymentListener,
                                                                tmp_path: Path):
    # The duplicate needs the job row already (iou_eval, done) when the last variant's completion is handled: two
    # variants finishing at once can leave it (iou_eval, running) (the aggregate trigger takes no lock), and then the
    # deployment starts ad_copy_gen_kor once. One stage call at a time makes that ordering certain; and, as in
    # production, the feed stage (a GPT call, 1 s here) ends after both Korean-copy calls.
    done, doc = _run(deployment_db, tmp_path, str(ROOT / "scenarios" / "smoke.yaml"))
    assert done.returncode == 1, done.stdout + done.stderr
    (smoke,) = doc["scenarios"]
    failures = [f for job in smoke["jobs"] for f in job["failures"]] + smoke["failures"]
    assert failures and all(f["step"] == "ad_copy_gen_kor" for f in failures), [f["message"] for f in failures]
    assert all("ad_copy_gen_kor ran twice: a duplicate trigger?" in f["message"] for f in failures)

"""Scenarios that cannot mean anything against this target are not run, with the reason; the others run."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from runner import resources
from tests.cli.test_run_cli import JUNIT_XSD, invoke, url

FAULTY = ("name: faulty\ntenant: {id: ye_notrun_test, isolate: true}\nsimulate_img_gen: true\n"
          "reference_pipeline: {faults: [{kind: skip, step: yolo_detect}]}\n")
PARTIAL = ("name: partial\ntenant: {id: ye_notrun_test, isolate: true}\nsimulate_img_gen: true\n"
           "expect: {stop_after: planner}\nreference_pipeline: {stop_after: planner}\n")
SEED_ONLY = "name: seed-only\ntenant: {id: ye_notrun_test, isolate: true}\nobserve: false\ncleanup: always\n"
ELSEWHERE = ("name: elsewhere\ntenant: {id: ye_notrun_test, isolate: true}\nobserve: false\n"
             "fixtures: [{table: brand_kits, rows: [{job_id: '${job.id}'}]}]\n"
             "expect: {sql: [{name: kits, query: 'select count(*) from brand_guidelines', rows: 1}]}\n")


def _suite(tmp_path: Path, **texts: str) -> Path:
    folder = tmp_path / "suite"
    folder.mkdir()
    for name, text in texts.items():
        (folder / f"{name}.yaml").write_text(text)
    return folder


def test_reference_pipeline_scenarios_are_not_run_against_a_real_pipeline(db, tmp_path: Path):
    suite = _suite(tmp_path, faulty=FAULTY, partial=PARTIAL, seed_only=SEED_ONLY)
    report, junit, html = tmp_path / "run.json", tmp_path / "junit.xml", tmp_path / "run.html"
    done = invoke("run", str(suite), "--database-url", url(db), "--no-reference-pipeline", "--json", str(report),
                  "--junit", str(junit), "--html", str(html))
    assert done.exit_code == 0, done.output
    assert "faulty: NOT RUN - not run: it injects faults into the reference pipeline (skip); run it with " \
           "--reference-pipeline" in done.stdout
    assert "partial: NOT RUN - not run: it stops the reference pipeline after planner" in done.stdout
    assert "3 scenarios: 1 passed, 0 failed, 0 errors, 2 not run" in done.stdout
    doc = json.loads(report.read_text())
    resources.validator("report.schema.json").validate(doc)
    outcomes = {s["name"]: s["outcome"] for s in doc["scenarios"]}
    assert outcomes == {"faulty": "not_run", "partial": "not_run", "seed-only": "seeded"}
    reasons = {s["name"]: s["note"] for s in doc["scenarios"]}
    assert reasons["faulty"].startswith("not run: it injects faults") and reasons["seed-only"] is None
    assert "not run: it stops the reference pipeline after planner" in html.read_text()
    JUNIT_XSD.validate(str(junit))
    skipped = [e.get("message") for e in ET.parse(junit).iter("skipped")]
    assert any("faults into the reference pipeline" in (m or "") for m in skipped), skipped
    listed = invoke("list", str(suite))
    (line,) = [line for line in listed.stdout.splitlines() if line.startswith("faulty")]
    assert line.endswith("[reference pipeline only]")


def test_a_scenario_needing_tables_the_target_lacks_is_not_run_and_the_others_run(db, tmp_path: Path):
    suite = _suite(tmp_path, elsewhere=ELSEWHERE, seed_only=SEED_ONLY)
    done = invoke("run", str(suite), "--database-url", url(db), "--no-reference-pipeline")
    assert done.exit_code == 0, done.output
    assert "elsewhere: NOT RUN - not run: the database lacks what its fixtures need" in done.stdout
    assert "table 'brand_kits' does not exist in the database" in done.stdout
    assert "seed-only: SEEDED" in done.stdout or "1 passed" in done.stdout


def test_a_misspelt_table_is_still_the_authors_error(db, tmp_path: Path):
    typo = ELSEWHERE.replace("brand_kits", "job_input").replace("brand_guidelines", "jobs")
    suite = _suite(tmp_path, typo=typo, seed_only=SEED_ONLY)
    done = invoke("run", str(suite), "--database-url", url(db), "--no-reference-pipeline")
    assert done.exit_code == 2
    assert "table 'job_input' does not exist in the database; did you mean 'job_inputs'?" in done.stderr


def test_an_sql_check_on_a_table_the_target_lacks_is_not_run(db, tmp_path: Path):
    text = ("name: sql-elsewhere\ntenant: {id: ye_notrun_test, isolate: true}\nobserve: false\n"
            "expect: {sql: [{name: kits, query: 'select count(*) from brand_guidelines', rows: 1}]}\n")
    done = invoke("run", str(_suite(tmp_path, sql=text)), "--database-url", url(db), "--no-reference-pipeline")
    assert done.exit_code == 0, done.output
    assert "sql-elsewhere: NOT RUN - not run: the database lacks what its SQL checks read" in done.stdout
    assert 'relation "brand_guidelines" does not exist' in done.stdout

"""The pipeline as data: the built-in definition, definition files, and every command reading them."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner import resources
from runner.cli.main import cli
from runner.db.connect import Database
from runner.definition import DEFAULT, DEFAULT_TEXT
from runner.errors import ScenarioError
from runner.scenario import loader

ROOT = Path(__file__).resolve().parents[1]

TEAM = """\
name: team pipeline
variant_steps:
  - user_img_input
  - {name: img_gen, simulated: true}
  - vlm_analyze
  - yolo_detect
  - planner
  - {name: overlay, retry_to: {step: planner, status: done}}
  - safety_check
  - judge
  - ocr_eval
  - readability_eval
  - iou_eval
job_steps:
  - {name: ad_copy_gen_kor, writes: [done]}
  - {name: instagram_feed_gen, writes: [done]}
seed_states: [user_img_input, img_gen]
seed_rows:
  - {name: english_ad_copy, table: txt_ad_copy_generations,
     values: {job_id: "${job.id}", generation_stage: ad_copy_eng, ad_copy_eng: "${scenario.ad_copy}", status: done}}
job_row: each_step
"""
"""The deployment with a step added after overlay (safety_check) and one renamed (vlm_judge -> judge); its job-level
stages read the job's English ad copy, so it seeds one, as the built-in definition does."""

SCENARIO = """\
name: team
simulate_img_gen: true
tenant: {id: ye_team_test, isolate: true}
expect:
  latency: {safety_check: {max: 30s}, judge: {max: 30s}}
reference_pipeline:
  latency: {steps: {safety_check: 5ms}}
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args))


def test_the_built_in_definition_is_its_text_and_its_documentation(tmp_path: Path):
    loaded = loader.load_definition(write(tmp_path, "default.yaml", DEFAULT_TEXT))
    assert loaded.steps == DEFAULT.steps and loaded.seed_states == DEFAULT.seed_states
    assert (loaded.job_row, loaded.statuses, loaded.name) == (DEFAULT.job_row, DEFAULT.statuses, DEFAULT.name)
    assert [(r.name, r.table, r.values) for r in loaded.seed_rows] == [
        (r.name, r.table, r.values) for r in DEFAULT.seed_rows]
    assert loaded.sha256 == DEFAULT.sha256 == hashlib.sha256(DEFAULT_TEXT.encode()).hexdigest()
    docs = (ROOT / "docs" / "pipeline-definition.md").read_text(encoding="utf-8")
    block = re.search(r"## The built-in definition\n\n```yaml\n(.*?)```", docs, re.S)
    assert block is not None and block.group(1) == DEFAULT_TEXT
    assert DEFAULT.job_names == ("ad_copy_gen_kor", "instagram_feed_gen")
    assert DEFAULT.retry_target("overlay") == ("planner", "done") and DEFAULT.retry_target("ocr_eval") == (
        "ocr_eval", "queued")


def test_the_shipped_schemas_carry_the_built_in_steps():
    steps = resources.schema("scenario.schema.json")["$defs"]["step"]["enum"]
    assert steps == list(DEFAULT.names)
    assert resources.schema("pipeline.schema.json")["$defs"]["step"]["enum"] == list(DEFAULT.names)


def test_an_invalid_definition_gets_located_errors_and_exit_2(tmp_path: Path):
    bad = write(tmp_path, "bad.yaml", "variant_steps:\n  - user_img_input\n  - {name: a, writes: [runnin, done]}\n"
                                      "  - {name: b, retry_to: {step: c}}\n  - a\njob_steps: [{name: j, simulated: "
                                      "true}]\nseed_states: [x]\njob_rows: together\n")
    with pytest.raises(ScenarioError) as caught:
        loader.load_definition(bad)
    assert [str(p) for p in caught.value.problems] == [
        f"{bad}:8:1: $.job_rows: unknown key 'job_rows'; did you mean 'job_row'?"]
    fixed = bad.replace("bad", "bad2")
    Path(fixed).write_text(Path(bad).read_text().replace("job_rows: together\n", ""))
    with pytest.raises(ScenarioError) as caught:
        loader.load_definition(fixed)
    assert [str(p).split(": ", 1)[1] for p in caught.value.problems] == [
        "$.variant_steps[1].writes[0]: 'runnin' is not one of the statuses (queued, running, done, failed)",
        "$.variant_steps[2].retry_to.step: a retry returns to this step or an earlier one on the same row "
        "(user_img_input, a, b); got 'c'",
        "$.variant_steps[3]: step 'a' is defined twice (first at variant_steps[1])",
        "$.job_steps[0].simulated: the simulated step must be variant_steps[1], right after the seeded step: the "
        "runner writes it to variants it seeded",
        "$.seed_states[0]: 'x' is not a variant step (user_img_input, a, b, a)",
    ]
    scenario = write(tmp_path, "s.yaml", "name: s\n")
    result = invoke("validate", scenario, "--pipeline-file", fixed)
    assert result.exit_code == 2 and result.stderr.count("\n") == 5 and "runnin" in result.stderr


def test_a_teams_steps_validate_with_their_file_and_not_without(tmp_path: Path):
    team, scenario = write(tmp_path, "team.yaml", TEAM), write(tmp_path, "s.yaml", SCENARIO)
    without = invoke("validate", scenario)
    assert without.exit_code == 1
    assert f"{scenario}:5:39: $.expect.latency.judge: unknown step name 'judge'; did you mean 'vlm_judge'?" \
           in without.stdout
    assert "unknown step name 'safety_check'" in without.stdout
    with_file = invoke("validate", scenario, "--pipeline-file", team)
    assert with_file.exit_code == 0, with_file.output
    refused = invoke("run", scenario, "--database-url", "postgresql://nobody@127.0.0.1:1/x")
    assert refused.exit_code == 2 and "did you mean 'vlm_judge'?" in refused.stderr


def test_schema_for_a_definition_completes_its_steps_in_editors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    team = write(tmp_path, "team.yaml", TEAM)
    shipped = json.loads(invoke("schema").stdout)
    assert "safety_check" not in shipped["$defs"]["step"]["enum"]
    monkeypatch.setenv("YE_PIPELINE_FILE", team)
    custom = json.loads(invoke("schema").stdout)
    assert custom["$defs"]["step"]["enum"][6:8] == ["safety_check", "judge"]
    assert custom["properties"]["expect"]["properties"]["retries"]["propertyNames"]["enum"][6] == "safety_check"
    assert json.loads(invoke("schema", "--definition").stdout)["title"] == "ye-run pipeline definition"


def test_a_teams_pipeline_runs_end_to_end_and_the_report_names_the_definition(db: Database, tmp_path: Path):
    team, scenario = write(tmp_path, "team.yaml", TEAM), write(tmp_path, "s.yaml", SCENARIO)
    report = tmp_path / "report.json"
    url = db.url.render_as_string(hide_password=False)
    result = invoke("run", scenario, "--pipeline-file", team, "--database-url", url, "--reference-pipeline",
                    "--json", str(report), "--asset-dir", str(tmp_path / "assets"))
    assert result.exit_code == 0, result.output
    doc = json.loads(report.read_text())
    (run,) = doc["scenarios"]
    assert run["plan"]["definition"] == {"name": "team pipeline", "source": team, "job_row": "each_step",
                                         "sha256": hashlib.sha256(TEAM.encode()).hexdigest()}
    steps = [t["step"] for t in run["jobs"][0]["variants"][0]["trace"] if t["status"] == "done"]
    assert steps[5:8] == ["overlay", "safety_check", "judge"]
    assert [t["step"] for t in run["jobs"][0]["job_trace"]][-2:] == ["ad_copy_gen_kor", "instagram_feed_gen"]
    assert "judge" in run["latency"] and "vlm_judge" not in run["latency"]


def test_a_definition_the_run_could_not_follow_is_refused(tmp_path: Path):
    bad = write(tmp_path, "d.yaml", "variant_steps: [a, b, {name: c, retry_to: {step: c}}, "
                                    "{name: d, retry_to: {step: b, status: failed}}]\nstatuses: [running, done, failed]\n")
    with pytest.raises(ScenarioError) as caught:
        loader.load_definition(bad)
    assert [str(p).split(": ", 1)[1] for p in caught.value.problems] == [
        "$.variant_steps[1]: a failed step is retried at (step, queued), and 'queued' is not one of the statuses "
        "(add it, or give the step a retry_to)",
        "$.variant_steps[2].retry_to: a retry goes where the step runs again: (c, done) would not run it again",
        "$.variant_steps[3].retry_to: a retry goes where the step runs again: (b, failed) would not run it again"]
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * 1_100_000)
    result = invoke("validate", write(tmp_path, "s.yaml", "name: s\n"), "--pipeline-file", str(huge))
    assert result.exit_code == 2 and result.stderr.strip() == (
        f"{huge}:1:1: $: file is larger than 1000000 bytes; the limit is 1000000")


def test_a_retry_goes_only_where_a_pipeline_picks_the_row_up_again(tmp_path: Path):
    """Issue 18, item 9: nothing resumes a row left `running` (the variant would wait for its timeout), and the
    seeded step never runs, so neither can be where a retry goes."""
    bad = write(tmp_path, "d.yaml", "variant_steps:\n  - a\n  - b\n  - {name: c, retry_to: {step: b, status: running}}\n"
                                    "  - {name: d, retry_to: {step: a, status: queued}}\n")
    with pytest.raises(ScenarioError) as caught:
        loader.load_definition(bad)
    assert [str(p) for p in caught.value.problems] == [
        f"{bad}:4:43: $.variant_steps[2].retry_to.status: a retry goes to 'queued' (the step is queued to run "
        "again) or to 'done' at an earlier step (the pipeline moves on from there); nothing picks up a row left "
        "'running', so the variant would wait for its timeout",
        f"{bad}:5:43: $.variant_steps[3].retry_to.status: a is the seeded step and never runs: a retry to it goes "
        "to (a, done), where the pipeline starts the variant over"]
    result = invoke("validate", write(tmp_path, "s.yaml", "name: s\n"), "--pipeline-file", bad)
    assert result.exit_code == 2 and "retry_to.status" in result.stderr
    fine = write(tmp_path, "ok.yaml", "variant_steps:\n  - a\n  - b\n  - {name: c, retry_to: {step: b, status: queued}}\n"
                                      "  - {name: d, retry_to: {step: a, status: done}}\n")
    assert loader.load_definition(fine).retry_target("d") == ("a", "done")


def test_the_simulated_step_is_the_one_right_after_the_seeded_step(tmp_path: Path):
    """Issue 18, item 12: the docs say so, and a scenario simulating a later step got a self-contradicting
    message."""
    bad = write(tmp_path, "d.yaml", "variant_steps:\n  - user_img_input\n  - prep\n  - {name: img_gen, simulated: true}\n")
    with pytest.raises(ScenarioError) as caught:
        loader.load_definition(bad)
    assert [str(p) for p in caught.value.problems] == [
        f"{bad}:4:32: $.variant_steps[2].simulated: the simulated step must be variant_steps[1], right after the "
        "seeded step: the runner writes it to variants it seeded"]
    result = invoke("validate", write(tmp_path, "s.yaml", "name: s\nsimulate_img_gen: true\n"), "--pipeline-file", bad)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "variant_steps[2].simulated" in result.stderr


def sized(variant: int, job: int) -> str:
    return ("variant_steps:\n" + "".join(f"  - s{i}\n" for i in range(variant))
            + "job_steps: [" + ", ".join(f"j{i}" for i in range(job)) + "]\n")


@pytest.mark.parametrize("variant, job, where", [(201, 50, "2:3: $.variant_steps"), (200, 51, "202:12: $.job_steps")])
def test_a_definition_is_bounded_in_size(tmp_path: Path, variant: int, job: int, where: str):
    """Issue 18, item 13: every trace is checked against the definition; 200 variant and 50 job steps leave room
    to grow (the deployment has 10 and 2)."""
    bad = write(tmp_path, "d.yaml", sized(variant, job))
    limit = 200 if "variant" in where else 50
    with pytest.raises(ScenarioError) as caught:
        loader.load_definition(bad)
    assert [str(p) for p in caught.value.problems] == [f"{bad}:{where}: needs at most {limit} item(s)"]
    result = invoke("validate", write(tmp_path, "s.yaml", "name: s\n"), "--pipeline-file", bad)
    assert result.exit_code == 2 and result.stderr == f"{bad}:{where}: needs at most {limit} item(s)\n"
    assert len(loader.load_definition(write(tmp_path, "ok.yaml", sized(200, 50))).steps) == 250


@pytest.mark.parametrize("steps, says", [
    ("[seeded, {name: render, simulated: true}, check]", "start:      (seeded, done); render simulated by the runner"),
    ("[seeded, render, check]", "start:      (seeded, done); no simulated step: the pipeline runs every step"),
])
def test_the_plan_names_the_definitions_simulated_step(tmp_path: Path, steps: str, says: str):
    """Issue 18, item 12: `--dry-run` said img_gen whatever the definition's steps."""
    definition = write(tmp_path, "d.yaml", f"name: own\nvariant_steps: {steps}\n")
    simulate = "simulate_img_gen: true\n" if "simulated: true" in steps else ""
    scenario = write(tmp_path, "s.yaml", f"name: s\n{simulate}")
    result = invoke("run", "--dry-run", scenario, "--pipeline-file", definition,
                    "--database-url", "postgresql://nobody@127.0.0.1:1/nothing")
    assert result.exit_code == 0, result.output
    assert says in result.stdout and "img_gen" not in result.stdout


def test_simulating_the_ye_step_is_refused_when_a_retry_needs_it_again(tmp_path: Path):
    """The runner writes the simulated step once per variant: a variant retried back before it would wait for a
    write nobody makes. Without simulate_img_gen the pipeline's YE part runs it again, and that is accepted."""
    definition = write(tmp_path, "d.yaml", DEFAULT_TEXT.replace("retry_to: {step: planner, status: done}",
                                                               "retry_to: {step: user_img_input}"))
    scenario = write(tmp_path, "s.yaml", "name: s\nsimulate_img_gen: true\n")
    result = invoke("run", "--dry-run", scenario, "--pipeline-file", definition,
                    "--database-url", "postgresql://nobody@127.0.0.1:1/nothing")
    assert result.exit_code == 2 and result.stderr == (
        f"{scenario}:2:19: $.simulate_img_gen: the runner writes img_gen once per variant, but the pipeline "
        "definition retries overlay to (user_img_input, done), after which img_gen must run again; let the "
        "pipeline's YE part run it (no simulate_img_gen)\n")
    accepted = invoke("validate", write(tmp_path, "ye.yaml", "name: ye\n"), "--pipeline-file", definition)
    assert accepted.exit_code == 0, accepted.output

"""Rows a real job has beyond the core ones (the English ad copy): declared by the definition, chosen per scenario."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.definition import DEFAULT
from runner.errors import ScenarioError
from runner.scenario import loader, model

AD_COPY = ("english_ad_copy", "txt_ad_copy_generations",
           (("job_id", "${job.id}"), ("generation_stage", "ad_copy_eng"), ("ad_copy_eng", "${scenario.ad_copy}"),
            ("status", "done")))

TIMED = """\
name: timed
variant_steps: [seeded, {name: work, timeout: 45s}, check]
job_steps: [{name: publish, writes: [done], timeout: 2m}]
seed_rows:
  - name: note
    table: job_notes
    values: {job_id: "${job.id}", body: "${scenario.ad_copy}", tenant_id: "${tenant.id}"}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def shape(rows) -> list[tuple]:  # type: ignore[no-untyped-def]
    return [(r.name, r.table, r.values) for r in rows]


def messages(tmp_path: Path, text: str, definition=DEFAULT) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ScenarioError) as caught:
        loader.load(write(tmp_path, "s.yaml", text), definition)
    return [str(p) for p in caught.value.problems]


def test_the_built_in_definition_seeds_the_english_ad_copy_with_a_default_text(tmp_path: Path):
    s = loader.load(write(tmp_path, "s.yaml", "name: s\n"))
    assert shape(DEFAULT.seed_rows) == [AD_COPY]
    assert shape(s.seed_rows) == [AD_COPY] and s.seed_rows_left_out == ()
    assert s.ad_copy == model.DEFAULT_AD_COPY and s.ad_copy.isascii() and len(s.ad_copy) > 10


def test_a_scenario_overrides_a_rows_values_column_by_column(tmp_path: Path):
    s = loader.load(write(tmp_path, "s.yaml", "name: s\nad_copy: Autumn sale, 20% off\nseed_rows:\n"
                                              "  english_ad_copy:\n    values: {generation_stage: refined_ad_copy, "
                                              "refined_ad_copy_eng: '${scenario.ad_copy} today', ad_copy_eng: null}\n"))
    assert s.ad_copy == "Autumn sale, 20% off"
    (row,) = s.seed_rows
    assert dict(row.values) == {"job_id": "${job.id}", "generation_stage": "refined_ad_copy", "ad_copy_eng": None,
                                "status": "done", "refined_ad_copy_eng": "${scenario.ad_copy} today"}
    assert row.where("refined_ad_copy_eng") == f"{tmp_path}/s.yaml:5:70: $.seed_rows.english_ad_copy.values" \
                                               ".refined_ad_copy_eng"
    assert row.where("job_id") == "built-in definition: $.seed_rows[0].values.job_id"


def test_a_scenario_leaves_a_row_out(tmp_path: Path):
    s = loader.load(write(tmp_path, "s.yaml", "name: s\nseed_rows: {english_ad_copy: false}\n"))
    assert s.seed_rows == () and s.seed_rows_left_out == ("english_ad_copy",)
    kept = loader.load(write(tmp_path, "k.yaml", "name: k\nseed_rows: {english_ad_copy: true}\n"))
    assert shape(kept.seed_rows) == [AD_COPY]


def test_an_unknown_row_name_is_located_with_a_suggestion(tmp_path: Path):
    assert messages(tmp_path, "name: s\nseed_rows:\n  english_adcopy: false\n  other: {values: {a: 1}}\n") == [
        f"{tmp_path}/s.yaml:3:3: $.seed_rows.english_adcopy: the pipeline definition declares no seed row "
        "'english_adcopy'; did you mean 'english_ad_copy'?",
        f"{tmp_path}/s.yaml:4:3: $.seed_rows.other: the pipeline definition declares no seed row 'other' "
        "(it declares: english_ad_copy)"]


def test_override_placeholders_are_checked(tmp_path: Path):
    assert messages(tmp_path, "name: s\nvariants: 2\nseed_rows:\n  english_ad_copy:\n    values: "
                              "{ad_copy_eng: '${scenario.adcopy}', job_id: '${variant.3.id}'}\n") == [
        f"{tmp_path}/s.yaml:5:27: $.seed_rows.english_ad_copy.values.ad_copy_eng: unknown placeholder "
        "${scenario.adcopy}; available: ${job.id}, ${tenant.id}, ${image.id}, ${variant.N.id}, ${scenario.ad_copy}",
        f"{tmp_path}/s.yaml:5:57: $.seed_rows.english_ad_copy.values.job_id: variant #3 does not exist: this "
        "scenario seeds 2 variant(s)"]


def test_fixtures_may_use_the_ad_copy_too(tmp_path: Path):
    s = loader.load(write(tmp_path, "s.yaml", "name: s\nfixtures:\n  - table: ad_copies\n    rows: "
                                              "[{job_id: '${job.id}', copy_text: '${scenario.ad_copy}'}]\n"))
    assert s.fixtures[0].rows[0][1] == ("copy_text", "${scenario.ad_copy}")


def test_a_definition_declares_rows_and_step_bounds(tmp_path: Path):
    definition = loader.load_definition(write(tmp_path, "d.yaml", TIMED))
    assert definition.step("work").timeout == 45.0 and definition.step("publish").timeout == 120.0
    assert definition.step("check").timeout == 300.0
    (row,) = definition.seed_rows
    assert (row.name, row.table) == ("note", "job_notes")
    assert row.where("body") == f"{tmp_path}/d.yaml:7:41: $.seed_rows[0].values.body"


def test_a_steps_bound_is_the_scenarios_step_limit_unless_the_scenario_sets_one(tmp_path: Path):
    definition = loader.load_definition(write(tmp_path, "d.yaml", TIMED))
    plain = loader.load(write(tmp_path, "a.yaml", "name: a\n"), definition)
    assert [plain.timeouts.for_step(s) for s in ("work", "check", "publish")] == [45.0, 300.0, 120.0]
    own = loader.load(write(tmp_path, "b.yaml", "name: b\ntimeouts: {steps: {publish: 5s}}\n"), definition)
    assert [own.timeouts.for_step(s) for s in ("work", "publish")] == [45.0, 5.0]
    overall = loader.load(write(tmp_path, "c.yaml", "name: c\ntimeouts: {step: 10s}\n"), definition)
    assert [overall.timeouts.for_step(s) for s in ("work", "check", "publish")] == [10.0, 10.0, 10.0]


@pytest.mark.parametrize("text, expected", [
    (TIMED.replace("${tenant.id}", "${variant.1.id}"),
     "7:75: $.seed_rows[0].values.tenant_id: a seed row belongs to the job, and a job's variants vary in number: "
     "${variant.1.id} cannot be used here (available: ${job.id}, ${tenant.id}, ${image.id}, ${scenario.ad_copy})"),
    (TIMED.replace("${scenario.ad_copy}", "${scenario.text}"),
     "7:41: $.seed_rows[0].values.body: unknown placeholder ${scenario.text}; available: ${job.id}, ${tenant.id}, "
     "${image.id}, ${scenario.ad_copy}"),
    (TIMED.replace("timeout: 45s", 'timeout: "0"'), "2:47: $.variant_steps[1].timeout: a step's bound must be longer "
                                                  "than 0"),
    (TIMED + "  - {name: note, table: other, values: {job_id: '${job.id}'}}\n",
     "8:5: $.seed_rows[1]: seed row 'note' is declared twice (first at seed_rows[0])"),
])
def test_a_bad_seed_row_or_bound_is_refused_where_it_is_written(tmp_path: Path, text: str, expected: str):
    path = write(tmp_path, "d.yaml", text)
    with pytest.raises(ScenarioError) as caught:
        loader.load_definition(path)
    assert [str(p) for p in caught.value.problems] == [f"{path}:{expected}"]


def test_the_plan_lists_the_rows_each_job_gets_and_the_ones_left_out(tmp_path: Path):
    from runner.engine import plan

    seeded = plan.build(loader.load(write(tmp_path, "a.yaml", "name: a\n")), "db")
    assert seeded["rows_per_job"]["txt_ad_copy_generations"] == 1
    assert "  seed row:   english_ad_copy -> txt_ad_copy_generations (skipped where the database has no such table)" \
           in plan.render(seeded).splitlines()
    left = plan.build(loader.load(write(tmp_path, "b.yaml", "name: b\nseed_rows: {english_ad_copy: false}\n")), "db")
    assert "txt_ad_copy_generations" not in left["rows_per_job"]
    assert "  seed row:   english_ad_copy left out (seed_rows: {english_ad_copy: false})" in plan.render(left)


def test_the_plan_shows_the_definitions_step_bounds(tmp_path: Path):
    from runner.engine import plan

    definition = loader.load_definition(write(tmp_path, "d.yaml", TIMED))
    shown = plan.render(plan.build(loader.load(write(tmp_path, "a.yaml", "name: a\ntimeouts: {steps: {check: 1s}}\n"),
                                               definition), "db"))
    assert "  timeouts:   step 5m (work 45s, publish 2m, check 1s), stall 5m, job 30m" in shown.splitlines()

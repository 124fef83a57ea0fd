"""The definition's seed rows against real PostgreSQL: seeded with the job, skipped without a table, refused when the
table cannot take them (before anything is seeded)."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import pytest

from runner.db import cleanup, catalog
from runner.db.connect import Database
from runner.definition import DEFAULT, SeedRow
from runner.errors import GuardError, InputError
from tests.db.helpers import count, finish, load, rows, seeding


@pytest.fixture
def stack():
    with contextlib.ExitStack() as s:
        yield s


def test_a_job_is_seeded_with_its_english_ad_copy(db: Database, tmp_path: Path, stack):
    s = seeding(db, load(tmp_path, "name: s\nad_copy: Autumn sale, 20% off\n"), tmp_path, stack=stack)
    job = s.seeder.seed_job(1)
    assert rows(s.conn, "select generation_stage, ad_copy_eng, refined_ad_copy_eng, status from "
                        "txt_ad_copy_generations where job_id = %s", (job.job_id,)) == [
        ("ad_copy_eng", "Autumn sale, 20% off", None, "done")]
    (key,) = [k for table, k in job.rows if table == "txt_ad_copy_generations"]
    assert count(s.conn, "select count(*) from txt_ad_copy_generations where ad_copy_gen_id::text = %s", key) == 1
    assert s.seeder.notes == ()
    finish(s)
    result = cleanup.cleanup_run(s.conn, catalog.read(s.conn), s.record)
    assert result.counts["txt_ad_copy_generations"] == 1
    assert count(s.conn, "select count(*) from txt_ad_copy_generations where job_id = %s", (job.job_id,)) == 0


def test_a_scenario_overrides_or_leaves_out_the_ad_copy(db: Database, tmp_path: Path, stack):
    refined = load(tmp_path, "name: s\nad_copy: Plain\nseed_rows:\n  english_ad_copy:\n    values: {generation_stage: "
                             "refined_ad_copy, refined_ad_copy_eng: '${scenario.ad_copy}, refined for ${tenant.id}'}\n")
    s = seeding(db, refined, tmp_path, stack=stack)
    job = s.seeder.seed_job(1)
    assert rows(s.conn, "select generation_stage, ad_copy_eng, refined_ad_copy_eng from txt_ad_copy_generations "
                        "where job_id = %s", (job.job_id,)) == [
        ("refined_ad_copy", "Plain", f"Plain, refined for {s.record.tenant_id}")]
    without = seeding(db, load(tmp_path, "name: s\nseed_rows: {english_ad_copy: false}\n"), tmp_path, stack=stack)
    bare = without.seeder.seed_job(1)
    assert count(s.conn, "select count(*) from txt_ad_copy_generations where job_id = %s", (bare.job_id,)) == 0
    assert {table for table, _ in bare.rows} == {"jobs", "image_assets", "job_inputs", "jobs_variants"}


def test_a_database_without_the_table_skips_the_row_and_says_so(database_with, tmp_path: Path, stack):
    database = database_with("DROP TABLE txt_ad_copy_generations")
    s = seeding(database, load(tmp_path, "name: s\n"), tmp_path, stack=stack)
    job = s.seeder.seed_job(1)
    assert s.seeder.notes == ("seed row english_ad_copy not seeded: the database has no table txt_ad_copy_generations",)
    assert {table for table, _ in job.rows} == {"jobs", "image_assets", "job_inputs", "jobs_variants"}


def test_a_table_that_cannot_take_the_row_is_refused_where_it_was_written(database_with, tmp_path: Path, stack):
    database = database_with("ALTER TABLE txt_ad_copy_generations RENAME COLUMN ad_copy_eng TO ad_copy_en;"
                             "ALTER TABLE txt_ad_copy_generations ADD COLUMN model text NOT NULL")
    with pytest.raises(InputError) as caught:
        seeding(database, load(tmp_path, "name: s\n"), tmp_path, stack=stack)
    assert str(caught.value).splitlines() == [
        "built-in definition: $.seed_rows[0].values.ad_copy_eng: table txt_ad_copy_generations has no column "
        "'ad_copy_eng'; did you mean 'ad_copy_en'? (or leave the row out: seed_rows: {english_ad_copy: false})",
        "built-in definition: $.seed_rows[0]: txt_ad_copy_generations.model is NOT NULL with no default; give seed "
        "row english_ad_copy a value for it (or leave the row out: seed_rows: {english_ad_copy: false})"]
    scenario = load(tmp_path, "name: s\nseed_rows:\n  english_ad_copy: {values: {modle: y}}\n")
    with pytest.raises(InputError) as caught:
        seeding(database, scenario, tmp_path, stack=stack)
    assert f"{tmp_path}/case.yaml:3:37: $.seed_rows.english_ad_copy.values.modle: table txt_ad_copy_generations has " \
           "no column 'modle'; did you mean 'model'?" in str(caught.value)
    with contextlib.closing(database.connect()) as conn:
        assert count(conn, "select count(*) from jobs") == 0


def test_a_seed_row_naming_a_tenant_is_held_to_the_tenant_guard(db: Database, tmp_path: Path, stack):
    scenario = load(tmp_path, "name: s\n")
    row = SeedRow("feed", "instagram_feeds", (("tenant_id", "acme_corp"),), "d.yaml:3:5: $.seed_rows[1]",
                  (("tenant_id", "d.yaml:4:20: $.seed_rows[1].values.tenant_id"),))
    guarded = dataclasses.replace(scenario, seed_rows=DEFAULT.seed_rows + (row,))
    with pytest.raises(GuardError, match=r"^d\.yaml:4:20: \$\.seed_rows\[1\]\.values\.tenant_id: .*acme_corp"):
        seeding(db, guarded, tmp_path, stack=stack)

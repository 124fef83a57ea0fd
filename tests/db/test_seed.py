"""Seeding against real PostgreSQL: counts, values, sharing, atomicity, odd schemas, injection."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from runner.db import catalog, images, registry
from runner.db.connect import Database
from runner.db.seed import Seeder
from runner.errors import GuardError, InputError, SchemaMissingError, Unavailable

from tests.db.helpers import count, job_row_counts, load, rows, seeding

PNG_W, PNG_H = 400, 300


@pytest.fixture
def stack():
    with contextlib.ExitStack() as s:
        yield s


@pytest.mark.parametrize("variants", [1, 50])
def test_seed_counts_and_values(db: Database, tmp_path: Path, stack, variants: int):
    scenario = load(tmp_path, f"name: s\nvariants: {variants}\nimages: [{_png()}]\n"
                              "job_inputs: {desc_kor: 테스트 설명}\n")
    s = seeding(db, scenario, tmp_path, stack=stack)
    job = s.seeder.seed_job(1)
    conn = s.conn
    assert job_row_counts(conn, job.job_id) == {"jobs": 1, "job_inputs": 1, "jobs_variants": variants,
                                                "image_assets": 1}
    (state,) = rows(conn, "select tenant_id, status, current_step, store_id from jobs where job_id = %s",
                    (job.job_id,))
    assert state == (s.record.tenant_id, "done", "user_img_input", None)
    variant_rows = rows(conn, "select creation_order, status, current_step, retry_count, img_asset_id::text, "
                              "job_variants_id::text from jobs_variants where job_id = %s order by creation_order",
                        (job.job_id,))
    assert [r[0] for r in variant_rows] == list(range(1, variants + 1))
    assert {r[1:4] for r in variant_rows} == {("done", "user_img_input", 0)}
    assert {r[4] for r in variant_rows} == {job.asset_id}
    assert [r[5] for r in variant_rows] == [v.id for v in job.variants]
    (asset,) = rows(conn, "select image_type, width, height, tenant_id, job_id::text, image_url "
                          "from image_assets where image_asset_id = %s", (job.asset_id,))
    assert asset[:5] == ("generated", PNG_W, PNG_H, s.record.tenant_id, job.job_id)
    assert asset[5].startswith("file://") and Path(asset[5][7:]).read_bytes() == Path(_png()).read_bytes()
    assert rows(conn, "select img_asset_id::text, desc_kor, tone_style_id from job_inputs where job_id = %s",
                (job.job_id,)) == [(job.asset_id, "테스트 설명", None)]
    assert count(conn, "select count(*) from tenants where tenant_id = %s", (s.record.tenant_id,)) == 1
    assert s.record.tenant_created


def test_asset_is_shared_by_the_jobs_of_a_run(db: Database, tmp_path: Path, stack):
    s = seeding(db, load(tmp_path, "name: s\nvariants: 2\n"), tmp_path, stack=stack)
    first, second = s.seeder.seed_job(1), s.seeder.seed_job(2)
    assert first.asset_id == second.asset_id
    assert count(s.conn, "select count(*) from image_assets where tenant_id = %s", (s.record.tenant_id,)) == 1
    assert count(s.conn, "select count(distinct img_asset_id) from jobs_variants where job_id = any(%s::uuid[])",
                 ([first.job_id, second.job_id],)) == 1
    assert not s.record.tenant_created or count(
        s.conn, "select count(*) from tenants where tenant_id = %s", (s.record.tenant_id,)) == 1


def test_stored_image_is_named_by_content_hash(tmp_path: Path):
    source = Path(_png())
    one = images.store(source, tmp_path / "a")
    copy = tmp_path / "renamed.png"
    copy.write_bytes(source.read_bytes())
    two = images.store(copy, tmp_path / "a")
    assert one.stored == two.stored and one.url == two.url
    assert (one.width, one.height, one.format) == (PNG_W, PNG_H, "PNG")
    assert images.store(source, tmp_path / "b", base_url="https://cdn.example/ads/").url.startswith(
        "https://cdn.example/ads/" + one.sha256[:32])


def test_registry_records_the_root_rows_of_a_run(db: Database, tmp_path: Path, stack):
    s = seeding(db, load(tmp_path, "name: s\nvariants: 3\n"), tmp_path, stack=stack)
    job = s.seeder.seed_job(1)
    recorded = rows(s.conn, "select table_name, row_key->>0 from ye_run_seeded where run_id = %s",
                    (s.record.run_id,))
    # Variants and job inputs are found again from their job, so only the roots are stored (and, like fixture rows,
    # the definition's seed rows).
    (ad_copy,) = [key for table, key in job.rows if table == "txt_ad_copy_generations"]
    assert set(recorded) == {("jobs", job.job_id), ("image_assets", job.asset_id),
                             ("txt_ad_copy_generations", ad_copy[0])}
    assert {("jobs_variants", (v.id,)) for v in job.variants} <= set(job.rows)
    loaded = registry.load(s.conn, s.record.run_id)
    assert loaded is not None and loaded.job_ids == [job.job_id] and loaded.tenant_id == s.record.tenant_id


def test_without_a_registry_the_definitions_seed_rows_are_seeded_and_nothing_is_recorded(db: Database, tmp_path: Path,
                                                                                            stack):
    """Was: with no registry to write, the statement after the seed rows was empty and seeding failed ("can't
    execute an empty query"; bench/pipeline.py seeds that way)."""
    s = seeding(db, load(tmp_path, "name: s\nvariants: 3\n"), tmp_path, stack=stack)
    s.seeder.registry = False
    job = s.seeder.seed_job(1)
    assert job_row_counts(s.conn, job.job_id)["jobs"] == 1
    assert [t for t, _ in job.rows].count("txt_ad_copy_generations") == 1
    assert rows(s.conn, "select 1 from ye_run_seeded where run_id = %s", (s.record.run_id,)) == []


def test_failure_after_the_variants_insert_leaves_nothing(db: Database, tmp_path: Path, stack):
    # The fixture is inserted after the variants; its CHECK-violating row makes the seed fail there.
    scenario = load(tmp_path, """
name: s
fixtures:
  - table: ad_copies
    rows:
      - {job_id: "${job.id}", job_variants_id: "${variant.1.id}", copy_text: fine}
      - {job_id: "${job.id}", job_variants_id: "${variant.2.id}", copy_text: null}
""")
    s = seeding(db, scenario, tmp_path, stack=stack)
    before = _all_counts(s.conn)
    with pytest.raises(InputError) as caught:
        s.seeder.seed_job(1)
    assert "rolled back" in str(caught.value) and "ad_copies" in str(caught.value)
    assert _all_counts(s.conn) == before
    assert s.record.jobs == 0


def test_trigger_failure_on_variants_rolls_back_everything(database_with, tmp_path: Path, stack):
    database = database_with("""CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$
                                BEGIN IF NEW.creation_order = 3 THEN RAISE EXCEPTION 'injected fault'; END IF;
                                RETURN NEW; END $$;
                                CREATE TRIGGER boom AFTER INSERT ON jobs_variants FOR EACH ROW EXECUTE FUNCTION boom();""")
    s = seeding(database, load(tmp_path, "name: s\nvariants: 3\n"), tmp_path, stack=stack)
    with pytest.raises(InputError, match="injected fault"):
        s.seeder.seed_job(1)
    assert _all_counts(s.conn) == {"jobs": 0, "job_inputs": 0, "jobs_variants": 0, "image_assets": 0,
                                   "tenants": 0, "ye_run_seeded": 0}


def test_fixtures_are_seeded_with_placeholders(db: Database, tmp_path: Path, stack):
    scenario = load(tmp_path, """
name: s
fixtures:
  - table: ad_copies
    rows:
      - {job_id: "${job.id}", job_variants_id: "${variant.2.id}", copy_text: "for ${tenant.id} / ${image.id}"}
""")
    s = seeding(db, scenario, tmp_path, stack=stack)
    job = s.seeder.seed_job(1)
    (row,) = rows(s.conn, "select job_variants_id::text, copy_text from ad_copies where job_id = %s", (job.job_id,))
    assert row == (job.variant(2).id, f"for {s.record.tenant_id} / {job.asset_id}")
    assert ("ad_copies",) == tuple({t for t, _ in job.rows if t == "ad_copies"})


def test_store_and_tone_style_any_and_id(db: Database, tmp_path: Path, stack):
    store_id = "00000000-0000-4000-8000-000000000001"
    s = seeding(db, load(tmp_path, f"name: s\nstore: {{id: '{store_id}'}}\ntone_style: any\n"), tmp_path,
                stack=stack)
    job = s.seeder.seed_job(1)
    assert rows(s.conn, "select store_id::text from jobs where job_id = %s", (job.job_id,)) == [(store_id,)]
    assert rows(s.conn, "select tone_style_id is not null from job_inputs where job_id = %s",
                (job.job_id,)) == [(True,)]
    with pytest.raises(InputError, match="no stores row"):
        seeding(db, load(tmp_path, "name: s\nstore: {id: '00000000-0000-4000-8000-0000000000ff'}\n"), tmp_path,
                stack=stack)
    with pytest.raises(InputError, match="not a valid uuid"):
        seeding(db, load(tmp_path, "name: s\nstore: {id: not-a-uuid}\n"), tmp_path, stack=stack)


def test_schema_with_more_than_the_reference(database_with, tmp_path: Path, stack):
    database = database_with("""
        CREATE TABLE campaigns (campaign_id serial PRIMARY KEY, title text);
        ALTER TABLE jobs ADD COLUMN campaign_id integer REFERENCES campaigns,
                         ADD COLUMN priority integer NOT NULL DEFAULT 5,
                         ADD COLUMN notes text;
        ALTER TABLE jobs_variants ADD COLUMN output_url text, ADD COLUMN score real DEFAULT 0;
        ALTER TABLE job_inputs ADD COLUMN campaign_code text NOT NULL DEFAULT 'none';
        CREATE INDEX jobs_campaign_idx ON jobs (campaign_id);
        CREATE TABLE variant_traces (trace_id bigserial PRIMARY KEY,
            job_variants_id uuid NOT NULL REFERENCES jobs_variants, payload jsonb);
    """)
    scenario = load(tmp_path, "name: s\nvariants: 4\njob_inputs: {extra: {campaign_code: QA-11}}\n")
    s = seeding(database, scenario, tmp_path, stack=stack)
    job = s.seeder.seed_job(1)
    assert rows(s.conn, "select priority, campaign_id from jobs where job_id = %s", (job.job_id,)) == [(5, None)]
    assert rows(s.conn, "select campaign_code from job_inputs where job_id = %s", (job.job_id,)) == [("QA-11",)]
    assert count(s.conn, "select count(*) from jobs_variants where job_id = %s", (job.job_id,)) == 4


def test_missing_tables_and_columns_are_listed(database_with, tmp_path: Path):
    database = database_with("""
        CREATE TABLE jobs (job_id uuid PRIMARY KEY, tenant_id text, status text, current_step text);
        CREATE TABLE image_assets (image_asset_id uuid PRIMARY KEY, image_url text, width int,
                                   height int, tenant_id text, job_id uuid);
        CREATE TABLE jobs_variants (job_variants_id uuid PRIMARY KEY, job_id uuid, img_asset_id uuid,
                                    creation_order int, status text, current_step text);
    """, install=False)
    with contextlib.closing(database.connect()) as conn:
        with pytest.raises(SchemaMissingError) as caught:
            Seeder(conn, catalog.read(conn), load(tmp_path, "name: s\n"), registry.RunRecord("r", "s", "ye_x"),
                   _stored(tmp_path), False)
    message = str(caught.value)
    assert "table jobs lacks column(s): store_id" in message
    assert "table image_assets lacks column(s): image_type" in message
    assert "table job_inputs is missing" in message
    assert "jobs_variants" not in message


def test_not_null_without_default_is_reported(database_with, tmp_path: Path):
    database = database_with("ALTER TABLE jobs ADD COLUMN priority integer NOT NULL;"
                             "ALTER TABLE job_inputs ADD COLUMN channel text NOT NULL")
    with contextlib.closing(database.connect()) as conn:
        before = _all_counts(conn)
        with pytest.raises(SchemaMissingError) as caught:
            Seeder(conn, catalog.read(conn), load(tmp_path, "name: s\n"), registry.RunRecord("r", "s", "ye_x"),
                   _stored(tmp_path), True)
        assert "jobs.priority (integer)" in str(caught.value) and "job_inputs.channel (text)" in str(caught.value)
        assert _all_counts(conn) == before


def test_fixture_names_are_checked_against_the_catalog(db: Database, tmp_path: Path, stack):
    bad_table = load(tmp_path, "name: s\nfixtures: [{table: ad_copy, rows: [{job_id: '${job.id}'}]}]\n")
    with pytest.raises(InputError, match="table 'ad_copy' does not exist in the database; did you mean 'ad_copies'"):
        seeding(db, bad_table, tmp_path, stack=stack)
    bad_column = load(tmp_path, "name: s\nfixtures: [{table: ad_copies, rows: [{job_id: '${job.id}', "
                                "copy_text: x, drop_table: y}]}]\n")
    with pytest.raises(Unavailable, match="has no column 'drop_table'"):  # nothing like it: not a typo
        seeding(db, bad_column, tmp_path, stack=stack)
    typo = load(tmp_path, "name: s\nfixtures: [{table: ad_copies, rows: [{job_id: '${job.id}', copy_txt: x}]}]\n")
    with pytest.raises(InputError, match="has no column 'copy_txt'; did you mean 'copy_text'"):
        seeding(db, typo, tmp_path, stack=stack)
    elsewhere = load(tmp_path, "name: s\nfixtures: [{table: brand_kits, rows: [{job_id: '${job.id}'}]}]\n")
    with pytest.raises(Unavailable, match="table 'brand_kits' does not exist in the database$"):
        seeding(db, elsewhere, tmp_path, stack=stack)
    not_null = load(tmp_path, "name: s\nfixtures: [{table: ad_copies, rows: [{job_id: '${job.id}'}]}]\n")
    with pytest.raises(InputError, match="ad_copies.copy_text is NOT NULL"):
        seeding(db, not_null, tmp_path, stack=stack)


@pytest.mark.parametrize("tenant", ["customer_acme", "x'; DROP TABLE jobs; --", "prod_tenant"])
def test_tenant_guard_refuses_non_test_tenants(db: Database, tmp_path: Path, stack, tenant: str):
    scenario = load(tmp_path, "name: s\n")
    with contextlib.closing(db.connect()) as conn:
        before = _all_counts(conn)
    with pytest.raises(GuardError, match="does not look like test data"):
        seeding(db, scenario, tmp_path, tenant=tenant, stack=stack)
    with contextlib.closing(db.connect()) as conn:
        assert _all_counts(conn) == before
        assert count(conn, "select count(*) from pg_tables where tablename = 'jobs'") == 1


def test_injection_in_a_forced_tenant_id_is_just_data(db: Database, tmp_path: Path, stack, capsys):
    tenant = "ye_test_x'); DROP TABLE jobs; --"
    s = seeding(db, load(tmp_path, "name: s\n"), tmp_path, tenant=tenant, stack=stack)
    job = s.seeder.seed_job(1)
    assert rows(s.conn, "select tenant_id from jobs where job_id = %s", (job.job_id,)) == [(tenant,)]
    assert count(s.conn, "select count(*) from pg_tables where tablename = 'jobs'") == 1


def test_guard_pattern_and_force(db: Database, tmp_path: Path, stack, capsys):
    scenario = load(tmp_path, "name: s\n")
    seeding(db, scenario, tmp_path, tenant="acme_sandbox", stack=stack, tenant_pattern="_sandbox$")
    seeding(db, scenario, tmp_path, tenant="acme_real", stack=stack, force=True)
    assert "WARNING: --force" in capsys.readouterr().err


def test_not_an_image_and_truncated_image(tmp_path: Path):
    text = tmp_path / "photo.jpg"
    text.write_text("not an image")
    with pytest.raises(InputError, match="not an image file"):
        images.store(text, tmp_path / "assets")
    truncated = tmp_path / "cut.jpg"
    full = (Path(__file__).resolve().parents[2] / "pipeline_test" / "pipeline_test_image16.jpg").read_bytes()
    truncated.write_bytes(full[: len(full) // 2])
    with pytest.raises(InputError, match="damaged or truncated"):
        images.store(truncated, tmp_path / "assets")


def test_missing_images_list_the_paths_tried(tmp_path: Path):
    with pytest.raises(InputError) as caught:
        images.first_existing([tmp_path / "a.jpg", tmp_path / "b.png"], "s.yaml: $.images")
    assert "이미지 파일을 찾을 수 없습니다" in str(caught.value)
    assert str(tmp_path / "a.jpg") in str(caught.value) and str(tmp_path / "b.png") in str(caught.value)


def _png() -> str:
    return str(Path(__file__).resolve().parents[2] / "pipeline_test" / "pipeline_test_image1.png")


def _stored(tmp_path: Path) -> images.StoredImage:
    return images.store(Path(_png()), tmp_path / "assets")


def _all_counts(conn) -> dict[str, int]:
    tables = ["jobs", "job_inputs", "jobs_variants", "image_assets", "tenants", "ye_run_seeded"]
    out = {}
    for table in tables:
        try:
            out[table] = count(conn, f"select count(*) from {table}")
        except Exception:
            conn.rollback()
    return out




def test_a_failed_first_seed_does_not_claim_the_tenant(db: Database, tmp_path: Path, stack):
    scenario = load(tmp_path, "name: s\nfixtures: [{table: ad_copies, rows: [{job_id: '${job.id}', copy_text: null}]}]\n")
    s = seeding(db, scenario, tmp_path, stack=stack)
    with pytest.raises(InputError):
        s.seeder.seed_job(1)
    assert not s.record.tenant_created
    assert count(s.conn, "select count(*) from tenants where tenant_id = %s", (s.record.tenant_id,)) == 0

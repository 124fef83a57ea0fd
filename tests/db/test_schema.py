"""`db init` installs idempotently and never alters existing tables; `db check` changes nothing."""

from __future__ import annotations

import contextlib

import pytest
from click.testing import CliRunner

from runner.cli.main import cli
from runner.db import catalog, requirements, schema
from runner.errors import SchemaMissingError


def _url(database) -> str:
    return database.url.render_as_string(hide_password=False)


def test_init_is_idempotent(fresh_database):
    database = fresh_database()
    runner = CliRunner()
    first = runner.invoke(cli, ["db", "init", "--database-url", _url(database)])
    assert first.exit_code == 0 and "reference schema and ye-run objects installed" in first.stdout
    with contextlib.closing(database.connect()) as conn:
        before = catalog.read(conn)
    second = runner.invoke(cli, ["db", "init", "--database-url", _url(database)])
    assert second.exit_code == 0 and "already installed" in second.stdout
    with contextlib.closing(database.connect()) as conn:
        after = catalog.read(conn)
    assert before == after
    assert requirements.history_available(after) and requirements.registry_available(after)
    assert after.notifies("jobs_variants", "job_variant_state_changed") and after.notifies("jobs", "job_state_changed")


def test_check_reports_missing_parts_and_changes_nothing(database_with):
    database = database_with("CREATE TABLE jobs (job_id uuid primary key, tenant_id text, status text)", install=False)
    with contextlib.closing(database.connect()) as conn:
        before = catalog.read(conn)
    result = CliRunner().invoke(cli, ["db", "check", "--database-url", _url(database)])
    assert result.exit_code == 3
    assert "MISSING  table jobs: lacks store_id, current_step" in result.stdout
    assert "MISSING  table jobs_variants: missing" in result.stdout
    assert "absent   ye-run history" in result.stdout
    with contextlib.closing(database.connect()) as conn:
        assert catalog.read(conn) == before


def test_check_passes_on_the_reference_schema(db):
    result = CliRunner().invoke(cli, ["db", "check", "--database-url", _url(db)])
    assert result.exit_code == 0, result.output
    assert "MISSING" not in result.stdout and "ok       ye-run history" in result.stdout


def test_partial_pipeline_schema_is_refused(database_with):
    database = database_with("CREATE TABLE tenants (tenant_id text primary key)", install=False)
    with contextlib.closing(database.connect()) as conn:
        with pytest.raises(SchemaMissingError, match="refusing to guess"):
            schema.install(conn)
        assert set(catalog.read(conn).tables) == {"tenants"}


def test_existing_deployment_gets_only_ye_runs_objects(database_with):
    database = database_with("""
        CREATE TABLE jobs (job_id uuid primary key, tenant_id text, store_id uuid, status text,
                           current_step text, legacy_flag boolean);
        CREATE TABLE image_assets (image_asset_id uuid primary key, image_type text, image_url text,
                                   width int, height int, tenant_id text, job_id uuid);
        CREATE TABLE job_inputs (job_id uuid primary key, img_asset_id uuid, tone_style_id uuid, desc_kor text);
        CREATE TABLE jobs_variants (job_variants_id uuid primary key, job_id uuid, img_asset_id uuid,
                                    creation_order int, status text, current_step text);
    """, install=False)
    with contextlib.closing(database.connect()) as conn:
        result = schema.install(conn)
        after = catalog.read(conn)
    assert not result.reference_installed and result.runner_installed
    assert not after.has("ad_copies") and not after.has("tenants")
    assert after.has("jobs", "legacy_flag") and not after.has("jobs_variants", "retry_count")
    assert {t.name for t in after.triggers} == {"ye_run_history_variant", "ye_run_history_job"}


def test_a_reference_schema_installed_by_an_older_ye_run_gains_the_new_tables(database_with):
    """A reused embedded data directory holds the reference schema as an older ye-run installed it (no version mark,
    no ad copy or feed tables): install brings it up to date, and leaves a deployment's tables alone."""
    database = database_with("DROP TABLE txt_ad_copy_generations, instagram_feeds; COMMENT ON TABLE jobs IS NULL; "
                             "COMMENT ON TABLE ye_run_runs IS 'ye-run schema 2'; "
                             "INSERT INTO tenants (tenant_id) VALUES ('ye_old_test')")
    with contextlib.closing(database.connect()) as conn:
        result = schema.install(conn)
        after = catalog.read(conn)
        again = schema.install(conn)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM tenants WHERE tenant_id = 'ye_old_test'")
            kept = cur.fetchone()[0]
    assert result.reference_installed and result.note.startswith("reference schema brought up to date")
    assert after.has("txt_ad_copy_generations", "refined_ad_copy_eng") and after.has("instagram_feeds", "hashtags")
    assert again.note == "already installed" and kept == 1


def test_a_deployment_without_the_ad_copy_tables_is_not_given_them(database_with):
    database = database_with("DROP TABLE txt_ad_copy_generations, instagram_feeds, ad_copies; "
                             "COMMENT ON TABLE jobs IS NULL; COMMENT ON TABLE ye_run_runs IS 'ye-run schema 2'")
    with contextlib.closing(database.connect()) as conn:
        result = schema.install(conn)
        after = catalog.read(conn)
    assert not result.reference_installed
    assert not after.has("txt_ad_copy_generations") and not after.has("instagram_feeds")


RUNNER_SQL = {"ye-run schema 5": "3ee40a34aace9eaab850c742850efcd9fbf55e9108489dd2244c67917e0e13ee",
              "ye-run schema 6": "a6b04dd3de6f2f32f818ffafb8232334eecedbf63db9253a213ea2335223b9df"}
"""runner.sql's sha256 at each SCHEMA_VERSION: a change to runner.sql without a new version would never reach a
registry an older ye-run installed (the embedded default's, reused run after run)."""


def test_runner_sql_does_not_change_without_a_new_schema_version() -> None:
    import hashlib

    from runner import resources

    digest = hashlib.sha256(resources.sql("runner.sql").encode()).hexdigest()
    assert RUNNER_SQL.get(schema.SCHEMA_VERSION) == digest, (
        "runner.sql changed: bump schema.SCHEMA_VERSION, and record the new version and hash in RUNNER_SQL")


def test_a_registry_an_older_ye_run_installed_gains_the_new_columns(database_with):
    """The embedded default's registry, installed before `rows_deleted` existed, is brought up to date on start."""
    database = database_with("ALTER TABLE ye_run_runs DROP COLUMN rows_deleted; "
                             "COMMENT ON TABLE ye_run_runs IS 'ye-run schema 3'")
    with contextlib.closing(database.connect()) as conn:
        result = schema.install(conn)
        after = catalog.read(conn)
    assert result.runner_installed
    assert after.has("ye_run_runs", "rows_deleted")


def test_check_refuses_a_role_that_may_not_write_what_a_run_writes(database_with, tmp_path):
    """A read-only login passed `db check`, then every scenario failed at its first write; now `db check` says so,
    and a run refuses it once, before anything is seeded."""
    import uuid

    database = database_with()
    role = f"ye_reader_{uuid.uuid4().hex[:8]}"
    with contextlib.closing(database.connect(autocommit=True)) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE ROLE "{role}" LOGIN')
        cur.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
        cur.execute(f'GRANT INSERT, UPDATE ON jobs TO "{role}"')
    try:
        reader = database.url.set(username=role).render_as_string(hide_password=False)
        result = CliRunner().invoke(cli, ["db", "check", "--database-url", reader])
        assert result.exit_code == 3, result.output
        line = next(line for line in result.stdout.splitlines() if f"privileges of {role}" in line)
        assert line.split()[0] == "MISSING"
        assert "no DELETE on jobs" in line and "no INSERT, UPDATE, DELETE on jobs_variants" in line
        assert "privileges of" in result.stderr
        full = CliRunner().invoke(cli, ["db", "check", "--database-url", _url(database)])
        assert full.exit_code == 0 and "may seed, record and clean up" in full.stdout
        for name in ("a", "b"):
            (tmp_path / f"{name}.yaml").write_text(f"name: {name}\n")
        run = CliRunner().invoke(cli, ["run", str(tmp_path), "--database-url", reader, "--no-reference-pipeline"])
        assert run.exit_code == 3, run.output
        assert run.stderr.count(f"privileges of {role}: ") == 1 and "grant INSERT" in run.stderr
        with contextlib.closing(database.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM jobs")
            assert cur.fetchone() == (0,)
    finally:
        with contextlib.closing(database.connect(autocommit=True)) as conn, conn.cursor() as cur:
            cur.execute(f'DROP OWNED BY "{role}"')
            cur.execute(f'DROP ROLE "{role}"')


def test_the_applications_role_writes_its_rows_without_any_grant_on_the_history(database_with):
    """Installing ye-run's history must not make the application's own writes fail: its triggers record as the
    installer (SECURITY DEFINER), so a role with rights on the pipeline's tables only still writes, and is recorded."""
    import uuid

    database = database_with()
    role = f"ye_app_{uuid.uuid4().hex[:8]}"
    with contextlib.closing(database.connect(autocommit=True)) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE ROLE "{role}" LOGIN')
        cur.execute(f'GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO "{role}"')
        cur.execute(f'REVOKE ALL ON ye_run_history, ye_run_runs, ye_run_seeded FROM "{role}"')
        cur.execute("INSERT INTO tenants (tenant_id) VALUES ('ye_app_test') ON CONFLICT DO NOTHING")
    app = database.__class__(database.url.set(username=role))
    job = str(uuid.uuid4())
    try:
        with contextlib.closing(app.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT has_table_privilege('ye_run_history', 'INSERT')")
            assert cur.fetchone() == (False,)
            cur.execute("INSERT INTO jobs (job_id, tenant_id, status, current_step) "
                        "VALUES (%s, 'ye_app_test', 'done', 'user_img_input')", (job,))
            cur.execute("UPDATE jobs SET current_step = 'img_gen', status = 'running' WHERE job_id = %s", (job,))
            conn.commit()
        with contextlib.closing(database.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_step, status FROM ye_run_history WHERE job_id = %s ORDER BY id", (job,))
            assert cur.fetchall() == [("user_img_input", "done"), ("img_gen", "running")]
    finally:
        with contextlib.closing(database.connect(autocommit=True)) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM ye_run_history WHERE job_id = %s", (job,))
            cur.execute("DELETE FROM jobs WHERE job_id = %s", (job,))
            cur.execute(f'DROP OWNED BY "{role}"')
            cur.execute(f'DROP ROLE "{role}"')


OLD_TRIGGER = """
CREATE OR REPLACE FUNCTION ye_run_record_variant() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ye_run_history (kind, row_id, job_id, current_step, status)
    VALUES ('v', NEW.job_variants_id, NEW.job_id, NEW.current_step, NEW.status);
    RETURN NEW;
END $$;
COMMENT ON TABLE ye_run_runs IS 'ye-run schema 5';
"""
"""The variant trigger as schema 5 had it: it records, and announces nothing."""


def test_check_says_when_the_history_triggers_announce_nothing_and_init_updates_them(database_with):
    database = database_with(OLD_TRIGGER)
    before = CliRunner().invoke(cli, ["db", "check", "--database-url", _url(database)])
    assert before.exit_code == 0
    assert "its triggers are an older ye-run's and announce nothing" in before.stdout
    assert CliRunner().invoke(cli, ["db", "init", "--runner-only", "--database-url", _url(database)]).exit_code == 0
    after = CliRunner().invoke(cli, ["db", "check", "--database-url", _url(database)])
    assert "announce nothing" not in after.stdout and "complete traces" in after.stdout

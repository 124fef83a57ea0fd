"""FK-aware cleanup: dependents first, one transaction, never another run's or tenant's rows."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli.main import cli
from runner.db import catalog, cleanup
from runner.db.connect import Database
from runner.errors import GuardError
from tests.conftest import new_tenant
from tests.db.helpers import count, finish, job_row_counts, load, seeding


@pytest.fixture
def stack():
    with contextlib.ExitStack() as s:
        yield s


def _add_pipeline_rows(conn, job) -> None:
    """Rows the pipeline writes that reference the seeded ones (two levels deep for one table)."""
    with conn.cursor() as cur:
        for v in job.variants:
            cur.execute("insert into variant_evaluations (job_variants_id, step, score) values (%s, 'ocr_eval', 0.9)",
                        (v.id,))
            cur.execute("insert into ad_copies (job_id, job_variants_id, copy_text) values (%s, %s, 'copy')",
                        (job.job_id, v.id))
    conn.commit()


def test_run_cleanup_deletes_dependents_in_other_tables(db: Database, tmp_path: Path, stack):
    s = seeding(db, load(tmp_path, "name: s\nvariants: 3\n"), tmp_path, stack=stack)
    job = s.seeder.seed_job(1)
    _add_pipeline_rows(s.conn, job)
    result = cleanup.cleanup_run(s.conn, catalog.read(s.conn), s.record)
    assert result.counts["jobs_variants"] == 3 and result.counts["variant_evaluations"] == 3
    assert result.counts["ad_copies"] == 3 and result.counts["jobs"] == 1 and result.counts["job_inputs"] == 1
    assert result.counts["image_assets"] == 1 and result.counts.get("tenants") == 1
    order = list(result.counts)
    assert order.index("variant_evaluations") < order.index("jobs_variants") < order.index("jobs")
    assert order.index("job_inputs") < order.index("image_assets") < order.index("jobs")
    assert job_row_counts(s.conn, job.job_id) == {"jobs": 0, "job_inputs": 0, "jobs_variants": 0, "image_assets": 0}
    assert count(s.conn, "select count(*) from ye_run_history where job_id = %s", (job.job_id,)) == 0
    assert count(s.conn, "select count(*) from ye_run_runs where run_id = %s and cleaned_at is not null",
                 (s.record.run_id,)) == 1


def test_dry_run_counts_but_changes_nothing(db: Database, tmp_path: Path, stack):
    s = seeding(db, load(tmp_path, "name: s\nvariants: 2\n"), tmp_path, stack=stack)
    job = s.seeder.seed_job(1)
    before = job_row_counts(s.conn, job.job_id)
    result = cleanup.cleanup_run(s.conn, catalog.read(s.conn), s.record, dry_run=True)
    assert result.dry_run and result.counts["jobs_variants"] == 2 and result.total >= 5
    assert job_row_counts(s.conn, job.job_id) == before


def test_two_runs_of_one_tenant_are_cleaned_apart(db: Database, tmp_path: Path, stack):
    tenant = new_tenant()
    scenario = load(tmp_path, "name: s\nvariants: 2\n")
    first = seeding(db, scenario, tmp_path, tenant=tenant, stack=stack)
    second = seeding(db, scenario, tmp_path, tenant=tenant, stack=stack)
    a, b = first.seeder.seed_job(1), second.seeder.seed_job(1)
    _add_pipeline_rows(first.conn, b)
    result = cleanup.cleanup_run(first.conn, catalog.read(first.conn), first.record)
    assert job_row_counts(first.conn, a.job_id) == {"jobs": 0, "job_inputs": 0, "jobs_variants": 0, "image_assets": 0}
    assert job_row_counts(first.conn, b.job_id) == {"jobs": 1, "job_inputs": 1, "jobs_variants": 2, "image_assets": 1}
    assert count(first.conn, "select count(*) from ad_copies where job_id = %s", (b.job_id,)) == 2
    assert count(first.conn, "select count(*) from tenants where tenant_id = %s", (tenant,)) == 1
    assert "tenants" not in result.counts and any("kept tenant" in n for n in result.notes)


def test_cleanup_refuses_when_rows_reach_another_run(db: Database, tmp_path: Path, stack):
    scenario = load(tmp_path, "name: s\nvariants: 1\n")
    mine = seeding(db, scenario, tmp_path, stack=stack)
    theirs = seeding(db, scenario, tmp_path, stack=stack)
    job, other = mine.seeder.seed_job(1), theirs.seeder.seed_job(1)
    # Another run's variant points at this run's asset: deleting the asset would take it along.
    with mine.conn.cursor() as cur:
        cur.execute("update jobs_variants set img_asset_id = %s where job_id = %s", (job.asset_id, other.job_id))
    mine.conn.commit()
    with pytest.raises(GuardError, match="not this run's"):
        cleanup.cleanup_run(mine.conn, catalog.read(mine.conn), mine.record)
    assert job_row_counts(mine.conn, job.job_id)["jobs"] == 1
    assert job_row_counts(mine.conn, other.job_id)["jobs_variants"] == 1


def test_tenant_cleanup_removes_every_job_of_the_tenant(db: Database, tmp_path: Path, stack):
    tenant = new_tenant()
    s = seeding(db, load(tmp_path, "name: s\nvariants: 2\n"), tmp_path, tenant=tenant, stack=stack)
    jobs = [s.seeder.seed_job(i) for i in (1, 2)]
    other = seeding(db, load(tmp_path, "name: s\nvariants: 1\n"), tmp_path, stack=stack).seeder.seed_job(1)
    finish(s)  # a tenant is cleaned only once no run on it is going
    result = cleanup.cleanup_tenant(s.conn, catalog.read(s.conn), tenant)
    assert result.counts["jobs"] == 2 and result.counts["jobs_variants"] == 4 and result.counts["tenants"] == 1
    assert all(job_row_counts(s.conn, j.job_id)["jobs"] == 0 for j in jobs)
    assert job_row_counts(s.conn, other.job_id)["jobs"] == 1


def test_cleanup_follows_foreign_keys_of_a_custom_schema(database_with, tmp_path: Path, stack):
    database = database_with("""
        CREATE TABLE detections (detection_id bigserial PRIMARY KEY,
            job_variants_id uuid NOT NULL REFERENCES jobs_variants, label text);
        CREATE TABLE detection_boxes (box_id bigserial PRIMARY KEY,
            detection_id bigint NOT NULL REFERENCES detections, x int);
        CREATE TABLE overlay_layouts (job_id uuid, creation_order int, layout jsonb,
            PRIMARY KEY (job_id, creation_order),
            FOREIGN KEY (job_id) REFERENCES jobs (job_id));
    """)
    s = seeding(database, load(tmp_path, "name: s\nvariants: 2\n"), tmp_path, stack=stack)
    job = s.seeder.seed_job(1)
    with s.conn.cursor() as cur:
        for v in job.variants:
            cur.execute("insert into detections (job_variants_id, label) values (%s, 'bottle') returning detection_id",
                        (v.id,))
            (detection,) = cur.fetchone()
            cur.execute("insert into detection_boxes (detection_id, x) values (%s, 1), (%s, 2)", (detection, detection))
            cur.execute("insert into overlay_layouts values (%s, %s, '{}')", (job.job_id, v.creation_order))
    s.conn.commit()
    result = cleanup.cleanup_run(s.conn, catalog.read(s.conn), s.record)
    assert (result.counts["detection_boxes"], result.counts["detections"], result.counts["overlay_layouts"]) == (4, 2, 2)
    for table in ("detection_boxes", "detections", "overlay_layouts", "jobs", "jobs_variants"):
        assert count(s.conn, f"select count(*) from {table}") == 0


def test_cli_cleanup_by_run_report_and_tenant(db: Database, tmp_path: Path, stack):
    url = db.url.render_as_string(hide_password=False)
    s = seeding(db, load(tmp_path, "name: s\nvariants: 2\n"), tmp_path, stack=stack)
    job = s.seeder.seed_job(1)
    runner = CliRunner()
    live = runner.invoke(cli, ["cleanup", "--run", s.record.run_id, "--force", "--database-url", url])
    assert live.exit_code == 2 and "has not finished (running" in live.stderr and "nothing was deleted" in live.stderr
    assert job_row_counts(s.conn, job.job_id)["jobs"] == 1
    finish(s)
    dry = runner.invoke(cli, ["cleanup", "--run", s.record.run_id, "--dry-run", "--database-url", url])
    assert dry.exit_code == 0, dry.output
    assert "would delete" in dry.stdout and "jobs_variants" in dry.stdout
    assert job_row_counts(s.conn, job.job_id)["jobs"] == 1
    done = runner.invoke(cli, ["cleanup", "--run", s.record.run_id, "--database-url", url])
    assert done.exit_code == 0 and "deleted" in done.stdout
    assert job_row_counts(s.conn, job.job_id)["jobs"] == 0

    second = seeding(db, load(tmp_path, "name: s\n"), tmp_path, stack=stack)
    other = second.seeder.seed_job(1)
    finish(second)
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"run": {"record": second.record.to_json()}}))
    by_report = runner.invoke(cli, ["cleanup", "--report", str(report), "--database-url", url])
    assert by_report.exit_code == 0, by_report.output
    assert job_row_counts(s.conn, other.job_id)["jobs"] == 0

    refused = runner.invoke(cli, ["cleanup", "--tenant", "customer_acme", "--database-url", url])
    assert refused.exit_code == 2 and "does not look like test data" in refused.stderr
    usage = runner.invoke(cli, ["cleanup", "--database-url", url])
    assert usage.exit_code == 2 and "exactly one of" in usage.stderr
    unknown = runner.invoke(cli, ["cleanup", "--run", "nope", "--database-url", url])
    assert unknown.exit_code == 2 and "no run 'nope'" in unknown.stderr


def test_injection_in_cleanup_tenant_is_refused_and_harmless(db: Database, tmp_path: Path, stack):
    url = db.url.render_as_string(hide_password=False)
    with contextlib.closing(db.connect()) as conn:
        before = count(conn, "select count(*) from jobs")
    result = CliRunner().invoke(cli, ["cleanup", "--tenant", "x' OR '1'='1", "--database-url", url])
    assert result.exit_code == 2
    forced = CliRunner().invoke(cli, ["cleanup", "--tenant", "x' OR '1'='1", "--force", "--database-url", url])
    assert forced.exit_code == 0 and "deleted 0 row(s)" in forced.stdout
    with contextlib.closing(db.connect()) as conn:
        assert count(conn, "select count(*) from jobs") == before




def _lock_job(db: Database, job_id: str, stack) -> None:  # type: ignore[no-untyped-def]
    """Another session (a pipeline stage, a person in psql) holds a job row that is not the cleaner's."""
    holder = db.connect("lock holder")
    stack.callback(holder.close)
    with holder.cursor() as cur:
        cur.execute("SELECT 1 FROM jobs WHERE job_id = %s FOR UPDATE", (job_id,))


def test_the_tenant_creator_keeps_a_tenant_a_live_run_uses_without_touching_its_rows(db: Database, tmp_path: Path,
                                                                                     stack):
    """Was: the creator's cleanup locked every row of the tenant FOR UPDATE to see whether it was still used, and
    waited on (or deadlocked with) the other run's rows."""
    tenant = new_tenant()
    creator = seeding(db, load(tmp_path, "name: quick\nvariants: 1\n"), tmp_path, tenant=tenant, stack=stack)
    creator.seeder.seed_job(1)
    assert creator.record.tenant_created
    busy = seeding(db, load(tmp_path, "name: busy\nvariants: 1\n"), tmp_path, tenant=tenant, stack=stack)
    theirs = busy.seeder.seed_job(1)
    _lock_job(db, theirs.job_id, stack)
    result = cleanup.cleanup_run(creator.conn, catalog.read(creator.conn), creator.record)
    assert result.counts["jobs"] == 1 and "tenants" not in result.counts
    assert result.notes == [f"kept tenant {tenant}: another run is using it"]
    assert job_row_counts(creator.conn, theirs.job_id)["jobs"] == 1


def test_a_tenant_still_referenced_by_kept_rows_is_kept_without_locking_them(db: Database, tmp_path: Path, stack):
    tenant = new_tenant()
    creator = seeding(db, load(tmp_path, "name: quick\nvariants: 1\n"), tmp_path, tenant=tenant, stack=stack)
    creator.seeder.seed_job(1)
    kept = seeding(db, load(tmp_path, "name: kept\nvariants: 1\n"), tmp_path, tenant=tenant, stack=stack)
    theirs = kept.seeder.seed_job(1)
    finish(kept)  # finished, rows kept (cleanup: never): it holds nothing, but its rows name the tenant
    _lock_job(db, theirs.job_id, stack)
    result = cleanup.cleanup_run(creator.conn, catalog.read(creator.conn), creator.record)
    assert "tenants" not in result.counts
    assert result.notes == [f"kept tenant {tenant}: still referenced by rows of image_assets, jobs"]


def test_the_last_run_on_a_tenant_it_created_removes_it(db: Database, tmp_path: Path, stack):
    tenant = new_tenant()
    creator = seeding(db, load(tmp_path, "name: quick\nvariants: 1\n"), tmp_path, tenant=tenant, stack=stack)
    creator.seeder.seed_job(1)
    result = cleanup.cleanup_run(creator.conn, catalog.read(creator.conn), creator.record)
    assert result.counts.get("tenants") == 1 and result.notes == []


def test_the_last_run_on_a_tenant_another_run_created_removes_it(db: Database, tmp_path: Path, stack):
    """The creator finished first and had to leave the tenant (in use); the last run on it removes it (it used to
    stay for ever: that run had not created it)."""
    tenant = new_tenant()
    creator = seeding(db, load(tmp_path, "name: quick\nvariants: 1\n"), tmp_path, tenant=tenant, stack=stack)
    creator.seeder.seed_job(1)
    later = seeding(db, load(tmp_path, "name: later\nvariants: 1\n"), tmp_path, tenant=tenant, stack=stack)
    later.seeder.seed_job(1)
    assert creator.record.tenant_created and not later.record.tenant_created
    first = cleanup.cleanup_run(creator.conn, catalog.read(creator.conn), creator.record)
    assert "tenants" not in first.counts
    finish(creator)
    last = cleanup.cleanup_run(later.conn, catalog.read(later.conn), later.record)
    assert last.counts.get("tenants") == 1
    assert count(later.conn, "select count(*) from tenants where tenant_id = %s", (tenant,)) == 0

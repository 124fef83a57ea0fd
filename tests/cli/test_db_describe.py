"""`ye-run db describe`: what tables hold, from the catalog; docs/reference-schema.md is its output."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from runner.cli.main import cli
from runner.db.connect import Database

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ["tenants", "stores", "tone_styles", "jobs", "image_assets", "job_inputs", "jobs_variants",
             "txt_ad_copy_generations", "instagram_feeds", "ad_copies", "variant_evaluations"]


def test_the_reference_schema_page_is_what_describe_prints(db: Database):
    url = db.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(cli, ["db", "describe", *REFERENCE, "--database-url", url])
    assert result.exit_code == 0, result.output
    page = (ROOT / "docs" / "reference-schema.md").read_text(encoding="utf-8")
    block = re.search(r"```text\n(.*)```", page, re.S)
    assert block is not None and block.group(1) == result.stdout
    assert "  job_id                 uuid NOT NULL" in result.stdout and "\n  id " not in result.stdout


def test_describe_lists_the_tables_a_scenario_deals_with_and_suggests_names(db: Database):
    url = db.url.render_as_string(hide_password=False)
    everything = CliRunner().invoke(cli, ["db", "describe", "--database-url", url])
    assert everything.exit_code == 0
    tables = [line.split()[0] for line in everything.stdout.splitlines() if line and not line.startswith(" ")]
    assert tables[:3] == ["tenants", "stores", "tone_styles"] and "ye_run_history" in tables
    assert "ad_copies" in tables and "variant_evaluations" in tables
    typo = CliRunner().invoke(cli, ["db", "describe", "job_variants", "--database-url", url])
    assert typo.exit_code == 2 and "'job_variants' (did you mean 'jobs_variants'?)" in typo.stderr

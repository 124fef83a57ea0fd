"""What ye-run needs from a database, defined once for `db check` and the seeder's pre-check."""

from __future__ import annotations

from dataclasses import dataclass

from runner.db.catalog import Catalog

SEEDED_COLUMNS: dict[str, tuple[str, ...]] = {
    "jobs": ("job_id", "tenant_id", "store_id", "status", "current_step"),
    "image_assets": ("image_asset_id", "image_type", "image_url", "width", "height", "tenant_id", "job_id"),
    "job_inputs": ("job_id", "img_asset_id", "tone_style_id", "desc_kor"),
    "jobs_variants": ("job_variants_id", "job_id", "img_asset_id", "creation_order", "status", "current_step"),
}
"""Tables and columns every seed writes (DESIGN.md section 1), in foreign-key insert order."""

OPTIONAL_TABLES = ("tenants", "stores", "tone_styles")
TIMESTAMP_COLUMNS = ("created_at", "updated_at")
REFERENCE_TABLES = ("tenants", "stores", "tone_styles", "jobs", "image_assets", "job_inputs", "jobs_variants")
RUNNER_TABLES = ("ye_run_runs", "ye_run_seeded", "ye_run_history")
VARIANT_CHANNEL = "job_variant_state_changed"
JOB_CHANNEL = "job_state_changed"
HISTORY_CHANNEL = "ye_run_history"
"""ye-run's history triggers announce each record here (runner.sql): a reader needs no query to see it."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of `db check`: a thing the runner looks for, and whether it is there."""

    what: str
    ok: bool
    required: bool
    detail: str = ""


def missing_columns(catalog: Catalog) -> list[str]:
    """Human lines for every required table or column the database lacks."""
    lines = []
    for table, columns in SEEDED_COLUMNS.items():
        if catalog.table(table) is None:
            lines.append(f"table {table} is missing")
            continue
        absent = [c for c in dict.fromkeys(columns) if not catalog.has(table, c)]
        if absent:
            lines.append(f"table {table} lacks column(s): {', '.join(absent)}")
    return lines


def history_available(catalog: Catalog) -> bool:
    """ye-run's history table and its triggers are installed (transitions cannot be missed)."""
    names = {t.name for t in catalog.triggers}
    return catalog.has("ye_run_history") and {"ye_run_history_variant", "ye_run_history_job"} <= names


OWNER_COLUMNS = ("owner_host", "owner_pid", "owner_token", "seen_at", "stale_after", "cleanup_pending_until")
"""What a registry needs so cleaners can tell a live run (`ye-run db init` adds them to an older registry)."""


def registry_available(catalog: Catalog) -> bool:
    """The run registry is installed and current (an outdated one is not written to: its runs could not be told
    apart from finished ones)."""
    return (catalog.has("ye_run_runs") and catalog.has("ye_run_seeded")
            and all(catalog.has("ye_run_runs", c) for c in OWNER_COLUMNS))


def registry_outdated(catalog: Catalog) -> bool:
    return catalog.has("ye_run_runs") and not registry_available(catalog)


def findings(catalog: Catalog, variant_channel: str = VARIANT_CHANNEL,
             job_channel: str = JOB_CHANNEL) -> list[Finding]:
    """Everything `db check` reports, required parts first."""
    out = []
    for table, columns in SEEDED_COLUMNS.items():
        found = catalog.table(table)
        absent = [c for c in columns if found is None or not found.has(c)]
        detail = "missing" if found is None else (f"lacks {', '.join(absent)}" if absent else ", ".join(columns))
        out.append(Finding(f"table {table}", found is not None and not absent, True, detail))
    out.append(Finding(f"notify trigger on jobs_variants ({variant_channel})",
                       catalog.notifies("jobs_variants", variant_channel), True,
                       "the runner LISTENs on it" if catalog.notifies("jobs_variants", variant_channel)
                       else "no trigger on jobs_variants calls pg_notify on this channel"))
    out.append(Finding(f"notify trigger on jobs ({job_channel})", catalog.notifies("jobs", job_channel), False,
                       "" if catalog.notifies("jobs", job_channel) else "job rows are read instead"))
    for table in OPTIONAL_TABLES:
        out.append(Finding(f"table {table}", catalog.has(table), False,
                           "" if catalog.has(table) else "optional; not seeded"))
    announced = all(catalog.notifies(table, HISTORY_CHANNEL) for table in ("jobs", "jobs_variants"))
    out.append(Finding("ye-run history (ye_run_history + triggers)", history_available(catalog), False,
                       ("complete traces" if announced else "complete traces; its triggers are an older ye-run's "
                        "and announce nothing, so each notification costs a read (`ye-run db init` updates them)")
                       if history_available(catalog)
                       else "absent: LISTEN + reconciling reads, gaps possible (ye-run db init installs it)"))
    out.append(Finding("ye-run run registry (ye_run_runs, ye_run_seeded)", registry_available(catalog), False,
                       "" if registry_available(catalog) else
                       "outdated: no run owners; `ye-run db init` updates it" if registry_outdated(catalog) else
                       "absent: runs are recorded in reports only"))
    return out


PRIVILEGES = {**{table: ("SELECT", "INSERT", "UPDATE", "DELETE") for table in SEEDED_COLUMNS},
              "ye_run_runs": ("SELECT", "INSERT", "UPDATE", "DELETE"), "ye_run_seeded": ("SELECT", "INSERT", "DELETE")}
"""What a run does to each table: seeds (and simulates img_gen on) the pipeline's, records itself in the registry,
and deletes what it seeded."""


SEEDING = {table: ("INSERT",) for table in SEEDED_COLUMNS}
"""What every scenario needs: a run refuses a login without it before seeding anything."""


def privileges(conn, wanted: dict[str, tuple[str, ...]] = PRIVILEGES) -> Finding:  # type: ignore[no-untyped-def]
    """Whether this login may do what a run does, table by table (a read-only role used to pass `db check`, and
    then every scenario failed on its first write)."""
    pairs = [(table, privilege) for table, asked in wanted.items() for privilege in asked]
    with conn.cursor() as cur:
        cur.execute("SELECT t, p FROM unnest(%s::text[], %s::text[]) AS x(t, p) "
                    "WHERE to_regclass(t) IS NOT NULL AND NOT has_table_privilege(t, p)",
                    ([t for t, _ in pairs], [p for _, p in pairs]))
        refused = cur.fetchall()
        cur.execute("SELECT current_user")
        user = cur.fetchone()[0]
    conn.rollback()
    by_table: dict[str, list[str]] = {}
    for table, privilege in refused:
        by_table.setdefault(table, []).append(privilege)
    detail = "; ".join(f"no {', '.join(p)} on {t}" for t, p in by_table.items()) or "may seed, record and clean up"
    return Finding(f"privileges of {user}", not refused, True, detail)

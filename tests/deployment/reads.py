"""The listener's SQL around a stage call: its re-reads, its lookups, its sweeps (as pipeline_trigger.py and
job_state_listener.py write them)."""

from __future__ import annotations

import logging

from tests.deployment.stages import Conn

log = logging.getLogger("ye_run.deployment_harness")

BUMP = {
    "done": "UPDATE jobs_variants SET retry_count = retry_count + 1, updated_at = CURRENT_TIMESTAMP "
            "WHERE job_variants_id = %s",
    "failed": "UPDATE jobs_variants SET status = 'done', retry_count = retry_count + 1, "
              "updated_at = CURRENT_TIMESTAMP WHERE job_variants_id = %s",
}
"""How the deployment sends a lagging variant on: a done one keeps its state (only retry_count and
updated_at are written), a failed one is declared done, skipping the step it failed."""


def bump_stale(conn: Conn, job_id: str, stale_after: float) -> None:
    """A done variant not updated for `stale_after` s while a sibling is done at a later step (steps compared as
    text, as the deployment does) gets its retry_count bumped, which notifies it again."""
    with conn.cursor() as cur:
        cur.execute("UPDATE jobs_variants v1 SET retry_count = retry_count + 1, updated_at = CURRENT_TIMESTAMP "
                    "WHERE v1.job_id = %s AND v1.status = 'done' AND v1.current_step <> 'iou_eval' "
                    "AND v1.updated_at < now() - make_interval(secs => %s) AND EXISTS (SELECT 1 FROM "
                    "jobs_variants v2 WHERE v2.job_id = v1.job_id AND v2.current_step > v1.current_step "
                    "AND v2.status = 'done')", (job_id, stale_after))
    conn.commit()


def fix_iou_eval_jobs(conn: Conn) -> None:
    """_check_and_fix_iou_eval_jobs: a job (iou_eval, running) whose variants are all (iou_eval, done) -> done."""
    with conn.cursor() as cur:
        cur.execute("UPDATE jobs j SET status = 'done', current_step = 'iou_eval', retry_count = retry_count + 1, "
                    "updated_at = CURRENT_TIMESTAMP WHERE j.current_step = 'iou_eval' AND j.status = 'running' "
                    "AND EXISTS (SELECT 1 FROM jobs_variants v WHERE v.job_id = j.job_id) "
                    "AND NOT EXISTS (SELECT 1 FROM jobs_variants v WHERE v.job_id = j.job_id "
                    "AND (v.status <> 'done' OR v.current_step <> 'iou_eval')) RETURNING j.job_id")
        for (job_id,) in cur.fetchall():
            log.warning("recovered job %s: every variant (iou_eval, done), job was running", job_id)
    conn.commit()


def row_is(conn: Conn, table: str, key: str, row_id: str, step: str | None, status: str,
            tenant: str | None) -> bool:
    """The deployment's re-read before a call (_verify_job_state / _verify_job_variant_state)."""
    join = "jobs j" if table == "jobs" else "jobs_variants r JOIN jobs j ON j.job_id = r.job_id"
    alias = "j" if table == "jobs" else "r"
    with conn.cursor() as cur:
        cur.execute(f"SELECT {alias}.current_step, {alias}.status, j.tenant_id FROM {join} WHERE {alias}.{key} = %s",
                    (row_id,))
        row = cur.fetchone()
    conn.commit()
    return row is not None and row[0] == step and row[1] == status and (tenant is None or row[2] == tenant)


def overlay_text(conn: Conn, job_id: str, tenant: str) -> str | None:
    """The overlay's text: a Korean copy of stage 'ad_copy_kor' (a stage nothing writes), else desc_kor."""
    with conn.cursor() as cur:
        cur.execute("SELECT ad_copy_kor FROM txt_ad_copy_generations WHERE job_id = %s AND generation_stage = "
                    "'ad_copy_kor' AND status = 'done' ORDER BY created_at DESC LIMIT 1", (job_id,))
        row = cur.fetchone()
        if not (row and row[0]):
            cur.execute("SELECT i.desc_kor FROM jobs j JOIN job_inputs i ON i.job_id = j.job_id "
                        "WHERE j.job_id = %s AND j.tenant_id = %s", (job_id, tenant))
            row = cur.fetchone()
    conn.commit()
    return row[0] if row else None


def overlay_id(conn: Conn, variant_id: str, job_id: str, tenant: str) -> str | None:
    with conn.cursor() as cur:
        cur.execute("SELECT ol.overlay_id::text FROM overlay_layouts ol JOIN jobs_variants v "
                    "ON v.job_variants_id = ol.job_variants_id JOIN jobs j ON j.job_id = v.job_id "
                    "WHERE ol.job_variants_id = %s AND j.job_id = %s AND j.tenant_id = %s "
                    "ORDER BY ol.created_at DESC LIMIT 1", (variant_id, job_id, tenant))
        row = cur.fetchone()
    conn.commit()
    return row[0] if row else None

"""The deployment's stages as its routers write them: what a test tool sees in the tables, with no model run.

Each stage checks what its router checks (a refusal writes nothing, like the router's HTTP 4xx), spends
`latency` seconds as its "work", and commits the way its router commits:
- `vlm_analyze`, `yolo_detect`: running, the result rows and done in one transaction, so a watcher
  never sees them running;
- `planner` ... `iou_eval`: running is written before the work but committed after it, with the first
  result row (the row stays locked meanwhile); more result commits for `planner` and `overlay`; then
  done in a commit of its own;
- `ad_copy_gen_kor`, `instagram_feed_gen` (job level): only done, with their result rows.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import psycopg2.extensions

Conn = psycopg2.extensions.connection
Cursor = psycopg2.extensions.cursor

VARIANT_STAGES = ("vlm_analyze", "yolo_detect", "planner", "overlay", "vlm_judge", "ocr_eval",
                  "readability_eval", "iou_eval")
JOB_STAGES = ("ad_copy_gen_kor", "instagram_feed_gen")
TOGETHER = frozenset({"vlm_analyze", "yolo_detect"})
"""Stages whose running and done are committed together."""
ENGLISH_COPY = """
    SELECT COALESCE(refined_ad_copy_eng, ad_copy_eng) FROM txt_ad_copy_generations
     WHERE job_id = %s
       AND ((generation_stage = 'refined_ad_copy' AND refined_ad_copy_eng IS NOT NULL)
            OR (generation_stage = 'ad_copy_eng' AND ad_copy_eng IS NOT NULL))
       AND status = 'done'
     ORDER BY CASE generation_stage WHEN 'refined_ad_copy' THEN 1 WHEN 'ad_copy_eng' THEN 2 END, created_at DESC
     LIMIT 1"""
"""The job's English ad copy as both job-level routers read it: refined first, else the plain one."""


class Refused(Exception):
    """The router's HTTP 4xx: the stage wrote nothing."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Call:
    """One request to a stage, with what the listener looked up for it."""

    stage: str
    job_id: str
    tenant_id: str
    variant_id: str | None = None
    text: str | None = None
    overlay_id: str | None = None


def run(conn: Conn, call: Call, latency: float) -> None:
    """Run one stage on `conn`; Refused (nothing written) where its router answers 4xx."""
    try:
        with conn.cursor() as cur:
            if call.variant_id is None:
                JOB_RUNNERS[call.stage](conn, cur, call, latency)
            else:
                _variant_stage(conn, cur, call, latency)
    except BaseException:
        conn.rollback()
        raise


# --- variant stages -----------------------------------------------------------------------


def _variant_stage(conn: Conn, cur: Cursor, call: Call, latency: float) -> None:
    asset = _check_variant(cur, call)
    _set_state(cur, call.variant_id, call.stage, "running")
    time.sleep(latency)
    RESULTS[call.stage](conn, cur, call, asset)
    if call.stage not in TOGETHER:
        conn.commit()
    _set_state(cur, call.variant_id, call.stage, "done")
    conn.commit()


def _check_variant(cur: Cursor, call: Call) -> str | None:
    """The checks every variant router makes first; returns the variant's image asset."""
    cur.execute("SELECT v.job_id::text, v.img_asset_id::text, j.tenant_id FROM jobs_variants v "
                "LEFT JOIN jobs j ON j.job_id = v.job_id WHERE v.job_variants_id = %s", (call.variant_id,))
    row = cur.fetchone()
    if row is None:
        raise Refused(404, f"Job variant not found: {call.variant_id}")
    if row[0] != call.job_id:
        raise Refused(400, "Job variant job_id mismatch")
    if row[2] != call.tenant_id:
        raise Refused(400, "Job tenant_id mismatch")
    if call.stage == "vlm_analyze" and row[1] is None:
        raise Refused(404, "Image asset ID not found in job variant")
    if call.stage in ("vlm_judge", "ocr_eval", "readability_eval", "iou_eval"):
        cur.execute("SELECT 1 FROM overlay_layouts WHERE overlay_id = %s", (call.overlay_id,))
        if cur.fetchone() is None:
            raise Refused(404, f"Overlay layout not found: {call.overlay_id}")
    return row[1]


def _set_state(cur: Cursor, variant_id: str | None, step: str, status: str) -> None:
    cur.execute("UPDATE jobs_variants SET status = %s, current_step = %s, updated_at = CURRENT_TIMESTAMP "
                "WHERE job_variants_id = %s", (status, step, variant_id))


def _vlm_trace(cur: Cursor, call: Call, operation: str) -> None:
    cur.execute("INSERT INTO vlm_traces (vlm_trace_id, job_id, job_variants_id, provider, operation_type, request, "
                "response, latency_ms) VALUES (%s, %s, %s, 'llava', %s, %s, %s, 1.0)",
                (str(uuid.uuid4()), call.job_id, call.variant_id, operation, json.dumps({"harness": True}),
                 json.dumps({"is_valid": True})))


def _analyze(conn: Conn, cur: Cursor, call: Call, asset: str | None) -> None:
    _vlm_trace(cur, call, "analyze")


def _detect(conn: Conn, cur: Cursor, call: Call, asset: str | None) -> None:
    cur.execute("INSERT INTO detections (detection_id, job_id, image_asset_id, box, label, score) "
                "VALUES (%s, %s, %s, %s, 'food', 0.9)", (str(uuid.uuid4()), call.job_id, asset, "[10, 10, 50, 50]"))
    cur.execute("INSERT INTO yolo_runs (yolo_run_id, job_id, image_asset_id, model_name, detection_count, latency_ms) "
                "VALUES (%s, %s, %s, 'yolov8', 1, 1.0) ON CONFLICT (job_id) DO UPDATE SET "
                "detection_count = EXCLUDED.detection_count, updated_at = CURRENT_TIMESTAMP",
                (str(uuid.uuid4()), call.job_id, asset))


def _plan(conn: Conn, cur: Cursor, call: Call, asset: str | None) -> None:
    """Three commits: the proposal image (with running), the proposal, then done (by the caller)."""
    cur.execute("INSERT INTO image_assets (image_asset_id, image_type, image_url, width, height, tenant_id, job_id) "
                "VALUES (%s, 'planner', %s, 64, 64, %s, %s)",
                (str(uuid.uuid4()), f"/assets/{call.tenant_id}/planner/{uuid.uuid4()}.png", call.tenant_id,
                 call.job_id))
    conn.commit()
    cur.execute("SELECT img_asset_id FROM job_inputs WHERE job_id = %s", (call.job_id,))
    row = cur.fetchone()
    if row and row[0]:
        cur.execute("INSERT INTO planner_proposals (proposal_id, image_asset_id, layout, latency_ms) "
                    "VALUES (%s, %s, %s, 1.0)", (str(uuid.uuid4()), row[0], json.dumps({"proposals": []})))


def _overlay(conn: Conn, cur: Cursor, call: Call, asset: str | None) -> None:
    """The layout (with running), then the overlaid image and the variant's link to it."""
    cur.execute("SELECT proposal_id FROM planner_proposals WHERE image_asset_id = %s ORDER BY created_at DESC "
                "LIMIT 1", (asset,))
    proposal = cur.fetchone()
    cur.execute("INSERT INTO overlay_layouts (overlay_id, proposal_id, job_variants_id, layout, x_ratio, y_ratio, "
                "width_ratio, height_ratio, text_margin, latency_ms) VALUES (%s, %s, %s, %s, 0.1, 0.05, 0.8, 0.18, "
                "'10px', 1.0)", (str(uuid.uuid4()), proposal[0] if proposal else None, call.variant_id,
                                 json.dumps({"text": call.text})))
    conn.commit()
    overlaid = str(uuid.uuid4())
    cur.execute("INSERT INTO image_assets (image_asset_id, image_type, image_url, width, height, tenant_id, job_id) "
                "VALUES (%s, 'overlaid', %s, 64, 64, %s, %s)",
                (overlaid, f"/assets/{call.tenant_id}/final/{overlaid}.png", call.tenant_id, call.job_id))
    cur.execute("UPDATE jobs_variants SET overlaid_img_asset_id = %s, updated_at = CURRENT_TIMESTAMP "
                "WHERE job_variants_id = %s", (overlaid, call.variant_id))


def _evaluation(kind: str) -> Callable[[Conn, Cursor, Call, str | None], None]:
    def write(conn: Conn, cur: Cursor, call: Call, asset: str | None) -> None:
        cur.execute("INSERT INTO evaluations (evaluation_id, job_id, overlay_id, evaluation_type, metrics) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    (str(uuid.uuid4()), call.job_id, call.overlay_id, kind, json.dumps({"score": 1.0})))
    return write


def _judge(conn: Conn, cur: Cursor, call: Call, asset: str | None) -> None:
    _vlm_trace(cur, call, "judge")


RESULTS: dict[str, Callable[[Conn, Cursor, Call, str | None], None]] = {
    "vlm_analyze": _analyze, "yolo_detect": _detect, "planner": _plan, "overlay": _overlay, "vlm_judge": _judge,
    "ocr_eval": _evaluation("ocr"), "readability_eval": _evaluation("readability"), "iou_eval": _evaluation("iou"),
}


# --- job-level stages ----------------------------------------------------------------------


def _check_job(cur: Cursor, call: Call) -> str:
    """Job found and the tenant's, and an English ad copy done: the checks of both job-level routers."""
    cur.execute("SELECT tenant_id FROM jobs WHERE job_id = %s", (call.job_id,))
    row = cur.fetchone()
    if row is None:
        raise Refused(404, f"Job not found: {call.job_id}")
    if row[0] != call.tenant_id:
        raise Refused(400, "Job tenant_id mismatch")
    cur.execute(ENGLISH_COPY, (call.job_id,))
    copy = cur.fetchone()
    if not copy or not copy[0]:
        raise Refused(400, f"English ad copy not found for job_id: {call.job_id}")
    return copy[0]


def _llm_trace(cur: Cursor, call: Call, operation: str) -> str:
    trace = str(uuid.uuid4())
    cur.execute("INSERT INTO llm_traces (llm_trace_id, job_id, provider, operation_type, request, response, "
                "latency_ms) VALUES (%s, %s, 'gpt', %s, %s, %s, 1.0)",
                (trace, call.job_id, operation, json.dumps({"operation": operation}), json.dumps({"harness": True})))
    return trace


def _set_job_done(cur: Cursor, call: Call) -> None:
    cur.execute("UPDATE jobs SET current_step = %s, status = 'done', updated_at = CURRENT_TIMESTAMP "
                "WHERE job_id = %s", (call.stage, call.job_id))


def _eng_to_kor(conn: Conn, cur: Cursor, call: Call, latency: float) -> None:
    """`/api/yh/gpt/eng-to-kor`: the Korean copy (one eng_to_kor row per job, updated on a rerun)."""
    english = _check_job(cur, call)
    time.sleep(latency)
    trace = _llm_trace(cur, call, "eng_to_kor")
    korean = f"[ko] {english}"
    cur.execute("SELECT ad_copy_gen_id FROM txt_ad_copy_generations WHERE job_id = %s "
                "AND generation_stage = 'eng_to_kor' LIMIT 1", (call.job_id,))
    existing = cur.fetchone()
    if existing:
        cur.execute("UPDATE txt_ad_copy_generations SET llm_trace_id = %s, ad_copy_kor = %s, status = 'done', "
                    "updated_at = CURRENT_TIMESTAMP WHERE ad_copy_gen_id = %s", (trace, korean, existing[0]))
    else:
        cur.execute("INSERT INTO txt_ad_copy_generations (ad_copy_gen_id, job_id, llm_trace_id, generation_stage, "
                    "ad_copy_kor, status) VALUES (%s, %s, %s, 'eng_to_kor', %s, 'done')",
                    (str(uuid.uuid4()), call.job_id, trace, korean))
    cur.execute("UPDATE instagram_feeds SET ad_copy_kor = %s, updated_at = CURRENT_TIMESTAMP WHERE job_id = %s",
                (korean, call.job_id))
    _set_job_done(cur, call)
    conn.commit()


def _instagram_feed(conn: Conn, cur: Cursor, call: Call, latency: float) -> None:
    """`/api/yh/instagram/feed`: one instagram_feeds row per call (the Korean copy is optional there)."""
    english = _check_job(cur, call)
    cur.execute("SELECT ad_copy_kor FROM txt_ad_copy_generations WHERE job_id = %s AND generation_stage = "
                "'eng_to_kor' AND status = 'done' ORDER BY created_at DESC LIMIT 1", (call.job_id,))
    korean = cur.fetchone()
    cur.execute("SELECT i.desc_kor, t.kor_name, t.eng_name FROM job_inputs i LEFT JOIN tone_styles t "
                "ON t.tone_style_id = i.tone_style_id WHERE i.job_id = %s", (call.job_id,))
    inputs = cur.fetchone()
    if inputs is None:
        raise Refused(404, f"JobInput not found: {call.job_id}")
    time.sleep(latency)
    trace = _llm_trace(cur, call, "feed_gen")
    cur.execute("INSERT INTO instagram_feeds (instagram_feed_id, job_id, llm_trace_id, tenant_id, refined_ad_copy_eng, "
                "ad_copy_kor, tone_style, product_description, gpt_prompt, instagram_ad_copy, hashtags, "
                "used_temperature, latency_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'harness', %s, '#harness', "
                "0.7, 1.0)", (str(uuid.uuid4()), call.job_id, trace, call.tenant_id, english,
                              korean[0] if korean else None, inputs[1] or inputs[2] or "", inputs[0] or "",
                              f"feed: {english}"))
    _set_job_done(cur, call)
    conn.commit()


JOB_RUNNERS: dict[str, Callable[[Conn, Cursor, Call, float], None]] = {
    "ad_copy_gen_kor": _eng_to_kor, "instagram_feed_gen": _instagram_feed,
}

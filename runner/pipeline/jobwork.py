"""What the deployment's job-level stages do to the database, for the reference pipeline to do the same.

`ad_copy_gen_kor` (the deployment's eng-to-kor call) reads the job's English ad copy from
`txt_ad_copy_generations`: the refined copy when there is one, else the first draft, status done.
Without one the deployment answers with an HTTP error and writes nothing, so the job row stays
where it was. With one it writes the job's Korean copy row (`eng_to_kor`, rewritten when it
exists) and fills the Korean copy into the job's feed rows. `instagram_feed_gen` needs the English
copy too, and writes an `instagram_feeds` row. The work runs in the transaction that moves the
job row, so the rows and the state commit together. A database without those tables gets the
state writes alone.
"""

from __future__ import annotations

import logging
import threading

import psycopg2.extensions

from runner.db.catalog import Catalog

log = logging.getLogger("ye_run.pipeline")
AD_COPY_STEP, FEED_STEP = "ad_copy_gen_kor", "instagram_feed_gen"
AD_COPY_COLUMNS = ("job_id", "generation_stage", "ad_copy_kor", "ad_copy_eng", "refined_ad_copy_eng", "status")
FEED_COLUMNS = ("job_id", "tenant_id", "refined_ad_copy_eng", "ad_copy_kor", "tone_style", "product_description",
                "gpt_prompt", "instagram_ad_copy", "hashtags")

ENGLISH = """
SELECT CASE WHEN generation_stage = 'refined_ad_copy' THEN refined_ad_copy_eng ELSE ad_copy_eng END
FROM txt_ad_copy_generations
WHERE job_id = %s AND status = 'done'
  AND CASE generation_stage WHEN 'refined_ad_copy' THEN refined_ad_copy_eng
                            WHEN 'ad_copy_eng' THEN ad_copy_eng END IS NOT NULL
ORDER BY generation_stage = 'refined_ad_copy' DESC, created_at DESC
LIMIT 1"""
KOREAN_UPDATE = ("UPDATE txt_ad_copy_generations SET ad_copy_kor = %s, status = 'done', updated_at = now() "
                 "WHERE job_id = %s AND generation_stage = 'eng_to_kor'")
KOREAN_INSERT = ("INSERT INTO txt_ad_copy_generations (job_id, generation_stage, ad_copy_kor, status) "
                 "VALUES (%s, 'eng_to_kor', %s, 'done')")
FEED_COPY = "UPDATE instagram_feeds SET ad_copy_kor = %s, updated_at = now() WHERE job_id = %s"
KOREAN = ("SELECT ad_copy_kor FROM txt_ad_copy_generations WHERE job_id = %s AND generation_stage = 'eng_to_kor' "
          "AND status = 'done' ORDER BY created_at DESC LIMIT 1")
FEED_INPUTS = ("SELECT j.tenant_id, coalesce(i.desc_kor, ''), coalesce(to_jsonb(t) ->> 'kor_name', "
               "to_jsonb(t) ->> 'name', '') FROM jobs j LEFT JOIN job_inputs i ON i.job_id = j.job_id "
               "LEFT JOIN tone_styles t ON t.tone_style_id = i.tone_style_id WHERE j.job_id = %s")
FEED_INSERT = (f"INSERT INTO instagram_feeds ({', '.join(FEED_COLUMNS)}) "
               f"VALUES ({', '.join(['%s'] * len(FEED_COLUMNS))})")


class JobWork:
    """The job-level stages' reads and writes on one database (none where it lacks the tables)."""

    def __init__(self, catalog: Catalog):
        self.enabled = (all(catalog.has("txt_ad_copy_generations", c) for c in AD_COPY_COLUMNS + ("created_at",))
                        and all(catalog.has("instagram_feeds", c) for c in FEED_COLUMNS)
                        and catalog.has("job_inputs", "desc_kor") and catalog.has("tone_styles", "tone_style_id"))
        self._told: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def run(self, cur: psycopg2.extensions.cursor, step: str, job_id: str) -> bool:
        """Do the step's work for the job inside the caller's transaction; False when it cannot (no English ad
        copy): the caller writes nothing then, as the deployment does."""
        if not self.enabled or step not in (AD_COPY_STEP, FEED_STEP):
            return True
        cur.execute(ENGLISH, (job_id,))
        found = cur.fetchone()
        if found is None:
            self._tell(job_id, step)
            return False
        if step == AD_COPY_STEP:
            self._korean(cur, job_id, found[0])
        else:
            self._feed(cur, job_id, found[0])
        return True

    def _korean(self, cur: psycopg2.extensions.cursor, job_id: str, english: str) -> None:
        korean = f"[참조 파이프라인 번역] {english}"
        cur.execute(KOREAN_UPDATE, (korean, job_id))
        if cur.rowcount == 0:
            cur.execute(KOREAN_INSERT, (job_id, korean))
        cur.execute(FEED_COPY, (korean, job_id))

    def _feed(self, cur: psycopg2.extensions.cursor, job_id: str, english: str) -> None:
        cur.execute(KOREAN, (job_id,))
        korean = cur.fetchone()
        cur.execute(FEED_INPUTS, (job_id,))
        tenant, description, tone = cur.fetchone()
        prompt = f"Write an Instagram post. Tone: {tone or 'any'}. Product: {description}. Ad copy: {english}"
        cur.execute(FEED_INSERT, (job_id, tenant, english, korean[0] if korean else None, tone, description, prompt,
                                  f"{english} (reference pipeline post)", "#yerun #test"))

    def _tell(self, job_id: str, step: str) -> None:
        """Once per job and step: the sweep asks again every few seconds, as the deployment's recovery does."""
        with self._lock:
            if (job_id, step) in self._told:
                return
            self._told.add((job_id, step))
        log.info("pipeline: %s of job %s writes nothing: the job has no English ad copy (done) in "
                    "txt_ad_copy_generations", step, job_id[:8])

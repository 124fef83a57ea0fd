-- The reference schema of the ad-image pipeline (DESIGN.md section 1), for the embedded
-- default and `ye-run db init`. Idempotent. Real deployments have more columns, defaults
-- and foreign keys; ye-run introspects what it meets instead of assuming this file.

CREATE TABLE IF NOT EXISTS tenants (
    tenant_id   text PRIMARY KEY,
    name        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS stores (
    store_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS tone_styles (
    tone_style_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name          text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS jobs (
    job_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     text NOT NULL REFERENCES tenants (tenant_id),
    store_id      uuid REFERENCES stores (store_id),
    status        text NOT NULL,
    current_step  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS image_assets (
    image_asset_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    image_type     text NOT NULL,
    image_url      text NOT NULL,
    width          integer,
    height         integer,
    tenant_id      text REFERENCES tenants (tenant_id),
    job_id         uuid REFERENCES jobs (job_id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS job_inputs (
    job_id        uuid PRIMARY KEY REFERENCES jobs (job_id),
    img_asset_id  uuid REFERENCES image_assets (image_asset_id),
    tone_style_id uuid REFERENCES tone_styles (tone_style_id),
    desc_kor      text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS jobs_variants (
    job_variants_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job_id          uuid NOT NULL REFERENCES jobs (job_id),
    img_asset_id    uuid REFERENCES image_assets (image_asset_id),
    creation_order  integer NOT NULL,
    status          text NOT NULL,
    current_step    text NOT NULL,
    retry_count     integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS jobs_variants_job_id_idx ON jobs_variants (job_id);
CREATE INDEX IF NOT EXISTS jobs_variants_state_idx ON jobs_variants (current_step, status);

-- The job's ad copy and its Instagram feed, with the deployment's columns: the text part writes
-- the English copy ('ad_copy_eng', or 'refined_ad_copy') before the images; the job-level stages
-- read it and write the Korean copy ('eng_to_kor') and the feed. llm_trace_id and overlay_id
-- point at deployment tables (LLM traces, overlay layouts) the reference does not have.
CREATE TABLE IF NOT EXISTS txt_ad_copy_generations (
    ad_copy_gen_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job_id              uuid NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    llm_trace_id        uuid,
    generation_stage    text NOT NULL,
    ad_copy_kor         text,
    ad_copy_eng         text,
    refined_ad_copy_eng text,
    status              text DEFAULT 'queued',
    pk                  serial,
    created_at          timestamptz DEFAULT CURRENT_TIMESTAMP,
    updated_at          timestamptz DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS txt_ad_copy_generations_job_id_idx ON txt_ad_copy_generations (job_id);

CREATE TABLE IF NOT EXISTS instagram_feeds (
    instagram_feed_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job_id              uuid REFERENCES jobs (job_id),
    llm_trace_id        uuid,
    overlay_id          uuid,
    tenant_id           varchar(255) NOT NULL,
    refined_ad_copy_eng text NOT NULL,
    ad_copy_kor         text,
    tone_style          text NOT NULL,
    product_description text NOT NULL,
    gpt_prompt          text NOT NULL,
    instagram_ad_copy   text NOT NULL,
    hashtags            text NOT NULL,
    used_temperature    double precision,
    used_max_tokens     integer,
    latency_ms          double precision,
    pk                  serial,
    created_at          timestamptz DEFAULT CURRENT_TIMESTAMP,
    updated_at          timestamptz DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS instagram_feeds_job_id_idx ON instagram_feeds (job_id);

-- Two reference-only tables that reference variants (a deployment has many): per-variant copy
-- (for scenario fixtures) and evaluations (written by the *_eval steps of the reference
-- pipeline). Cleanup must delete them first.
CREATE TABLE IF NOT EXISTS ad_copies (
    ad_copy_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job_id          uuid NOT NULL REFERENCES jobs (job_id),
    job_variants_id uuid REFERENCES jobs_variants (job_variants_id),
    copy_text       text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS variant_evaluations (
    evaluation_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job_variants_id uuid NOT NULL REFERENCES jobs_variants (job_variants_id),
    step            text NOT NULL,
    score           double precision NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

INSERT INTO stores (store_id, name)
VALUES ('00000000-0000-4000-8000-000000000001', 'Reference test store')
ON CONFLICT DO NOTHING;
INSERT INTO tone_styles (tone_style_id, name)
VALUES ('00000000-0000-4000-8000-000000000002', 'Reference warm tone')
ON CONFLICT DO NOTHING;

-- The notify trigger: UPDATE only, and only when current_step or status changed.
CREATE OR REPLACE FUNCTION notify_job_variant_state_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('job_variant_state_changed', json_build_object(
        'job_variants_id', NEW.job_variants_id,
        'job_id', NEW.job_id,
        'current_step', NEW.current_step,
        'status', NEW.status,
        'img_asset_id', NEW.img_asset_id,
        'tenant_id', (SELECT tenant_id FROM jobs WHERE job_id = NEW.job_id),
        'updated_at', NEW.updated_at)::text);
    RETURN NEW;
END $$;

CREATE OR REPLACE TRIGGER job_variant_state_changed
AFTER UPDATE ON jobs_variants
FOR EACH ROW
WHEN (OLD.current_step IS DISTINCT FROM NEW.current_step OR OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION notify_job_variant_state_changed();

-- Job completion: the job becomes (step, done) when every variant is done at that step,
-- (step, failed) as soon as one fails. The job row is locked first so that two variants
-- finishing at once in separate transactions cannot both miss the other.
CREATE OR REPLACE FUNCTION complete_job_from_variants() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM jobs WHERE job_id = NEW.job_id FOR NO KEY UPDATE;
    IF NEW.status = 'failed' THEN
        UPDATE jobs SET current_step = NEW.current_step, status = 'failed', updated_at = clock_timestamp()
        WHERE job_id = NEW.job_id
          AND (current_step, status) IS DISTINCT FROM (NEW.current_step, 'failed');
    ELSIF NOT EXISTS (
        SELECT 1 FROM jobs_variants
        WHERE job_id = NEW.job_id AND (current_step <> NEW.current_step OR status <> 'done')
    ) THEN
        UPDATE jobs SET current_step = NEW.current_step, status = 'done', updated_at = clock_timestamp()
        WHERE job_id = NEW.job_id
          AND (current_step, status) IS DISTINCT FROM (NEW.current_step, 'done');
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE TRIGGER job_completion
AFTER UPDATE ON jobs_variants
FOR EACH ROW
WHEN (NEW.status IN ('done', 'failed')
      AND (OLD.current_step IS DISTINCT FROM NEW.current_step OR OLD.status IS DISTINCT FROM NEW.status))
EXECUTE FUNCTION complete_job_from_variants();

-- Job-level notifications.
CREATE OR REPLACE FUNCTION notify_job_state_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('job_state_changed', json_build_object(
        'job_id', NEW.job_id,
        'tenant_id', NEW.tenant_id,
        'current_step', NEW.current_step,
        'status', NEW.status,
        'updated_at', NEW.updated_at)::text);
    RETURN NEW;
END $$;

CREATE OR REPLACE TRIGGER job_state_changed
AFTER UPDATE ON jobs
FOR EACH ROW
WHEN (OLD.current_step IS DISTINCT FROM NEW.current_step OR OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION notify_job_state_changed();

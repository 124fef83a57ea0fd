-- A deployment-like schema: what the real deployment (sprint-team2-sBiz-AdGen) has on the path a
-- test job takes, written for ye-run's tests. Facts reproduced, not code copied:
--   tables, columns, defaults and foreign keys as declared in repo-app-yh docs/01_schema.sql;
--   the three triggers as the deployment installs them from repo-sBiz-AdGen db/init/
--   (02_job_state_notify_trigger.sql v1.0.0, 03_job_variants_state_notify_trigger.sql v1.3.0);
--   the database time zone of production (Asia/Seoul).
-- Idempotent: tables are created if missing, functions and triggers replaced.
-- How it differs from ye-run's reference schema (runner/db/sql/reference.sql), and why it matters,
-- is in tests/deployment/README.md.

DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
EXCEPTION WHEN OTHERS THEN
    -- Some servers (the embedded one) ship no contrib modules: same function name, core generator.
    CREATE OR REPLACE FUNCTION uuid_generate_v4() RETURNS uuid LANGUAGE sql AS 'SELECT gen_random_uuid()';
END $$;

DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET timezone = %L', current_database(), 'Asia/Seoul');
END $$;

CREATE TABLE IF NOT EXISTS users (
    user_id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    uid VARCHAR(255) UNIQUE,
    pk SERIAL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS tenants (
    tenant_id VARCHAR(255) PRIMARY KEY,
    display_name VARCHAR(255),
    uid VARCHAR(255) UNIQUE,
    pk SERIAL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

-- image_assets.job_id -> jobs and jobs.store_id -> stores -> image_assets form a cycle; the
-- deployment's file declares them in an order that fails on an empty database, so the
-- image_assets -> jobs key is added once jobs exists (below).
CREATE TABLE IF NOT EXISTS image_assets (
    image_asset_id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    image_type VARCHAR(50),
    image_url TEXT NOT NULL,
    mask_url TEXT,
    width INTEGER,
    height INTEGER,
    creator_id UUID REFERENCES users(user_id),
    tenant_id VARCHAR(255) REFERENCES tenants(tenant_id),
    job_id UUID,
    pk SERIAL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS stores (
    store_id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    user_id UUID REFERENCES users(user_id),
    image_id UUID REFERENCES image_assets(image_asset_id),
    title VARCHAR(500),
    body TEXT,
    store_category TEXT,
    auto_scoring_flag BOOLEAN DEFAULT FALSE,
    pk SERIAL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS tone_styles (
    tone_style_id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    code TEXT,
    kor_name TEXT,
    eng_name TEXT,
    description TEXT,
    pk SERIAL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS gen_models (
    model_id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    name TEXT,
    repo TEXT,
    version TEXT,
    defaults JSONB,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS jobs (
    job_id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    tenant_id VARCHAR(255) REFERENCES tenants(tenant_id),
    store_id UUID REFERENCES stores(store_id),
    status TEXT DEFAULT 'queued',
    current_step TEXT,
    version TEXT,
    retry_count INTEGER DEFAULT 0,
    pk SERIAL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

DO $$
BEGIN
    ALTER TABLE image_assets ADD CONSTRAINT image_assets_job_id_fkey FOREIGN KEY (job_id) REFERENCES jobs(job_id);
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE TABLE IF NOT EXISTS job_inputs (
    job_id UUID PRIMARY KEY REFERENCES jobs(job_id),
    img_asset_id UUID REFERENCES image_assets(image_asset_id),
    tone_style_id UUID REFERENCES tone_styles(tone_style_id),
    desc_kor TEXT,
    desc_eng TEXT,
    pk SERIAL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS jobs_variants (
    job_variants_id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    job_id UUID REFERENCES jobs(job_id),
    img_asset_id UUID REFERENCES image_assets(image_asset_id),
    creation_order INTEGER NOT NULL,
    selected BOOLEAN DEFAULT FALSE,
    status TEXT DEFAULT 'queued',
    current_step TEXT DEFAULT 'vlm_analyze',
    retry_count INTEGER DEFAULT 0,
    overlaid_img_asset_id UUID REFERENCES image_assets(image_asset_id),
    pk SERIAL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS vlm_prompt_assets (
    prompt_asset_id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    prompt_type TEXT,
    prompt_version TEXT,
    prompt JSONB,
    pk SERIAL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS vlm_traces (
    vlm_trace_id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    job_id UUID REFERENCES jobs(job_id),
    job_variants_id UUID REFERENCES jobs_variants(job_variants_id) ON DELETE SET NULL,
    provider TEXT,
    prompt_id UUID REFERENCES vlm_prompt_assets(prompt_asset_id) ON DELETE SET NULL,
    operation_type TEXT,
    request JSONB,
    response JSONB,
    latency_ms FLOAT,
    pk SERIAL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS detections (
    detection_id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    image_asset_id UUID REFERENCES image_assets(image_asset_id),
    model_id UUID REFERENCES gen_models(model_id),
    job_id UUID REFERENCES jobs(job_id),
    box JSONB,
    label VARCHAR(255),
    score DECIMAL(5,4),
    pk SERIAL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS yolo_runs (
    yolo_run_id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    job_id UUID UNIQUE REFERENCES jobs(job_id),
    image_asset_id UUID REFERENCES image_assets(image_asset_id),
    forbidden_mask_url TEXT,
    model_name VARCHAR(255),
    detection_count INTEGER DEFAULT 0,
    latency_ms FLOAT,
    pk SERIAL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS planner_proposals (
    proposal_id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    image_asset_id UUID REFERENCES image_assets(image_asset_id),
    prompt TEXT,
    layout JSONB,
    latency_ms FLOAT,
    pk SERIAL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS overlay_layouts (
    overlay_id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    proposal_id UUID REFERENCES planner_proposals(proposal_id),
    job_variants_id UUID REFERENCES jobs_variants(job_variants_id),
    layout JSONB,
    x_ratio DECIMAL(5,4),
    y_ratio DECIMAL(5,4),
    width_ratio DECIMAL(5,4),
    height_ratio DECIMAL(5,4),
    text_margin VARCHAR(50),
    latency_ms FLOAT,
    pk SERIAL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS evaluations (
    evaluation_id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    job_id UUID REFERENCES jobs(job_id),
    overlay_id UUID REFERENCES overlay_layouts(overlay_id),
    evaluation_type VARCHAR(50) NOT NULL,
    metrics JSONB NOT NULL,
    pk SERIAL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS llm_models (
    llm_model_id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    model_name VARCHAR(255) NOT NULL,
    model_version VARCHAR(255),
    provider VARCHAR(255) NOT NULL,
    default_temperature FLOAT,
    default_max_tokens INTEGER,
    prompt_token_cost_per_1m FLOAT,
    completion_token_cost_per_1m FLOAT,
    description TEXT,
    is_active VARCHAR(10) DEFAULT 'true',
    pk SERIAL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS llm_traces (
    llm_trace_id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    job_id UUID REFERENCES jobs(job_id),
    provider TEXT,
    llm_model_id UUID REFERENCES llm_models(llm_model_id) ON DELETE SET NULL,
    tone_style_id UUID REFERENCES tone_styles(tone_style_id),
    enhanced_img_id UUID REFERENCES image_assets(image_asset_id),
    prompt_id UUID,
    operation_type TEXT,
    request JSONB,
    response JSONB,
    latency_ms FLOAT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    total_tokens INTEGER,
    token_usage JSONB,
    pk SERIAL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS txt_ad_copy_generations (
    ad_copy_gen_id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    job_id UUID NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE,
    llm_trace_id UUID REFERENCES llm_traces(llm_trace_id) ON DELETE SET NULL,
    generation_stage TEXT NOT NULL,
    ad_copy_kor TEXT,
    ad_copy_eng TEXT,
    refined_ad_copy_eng TEXT,
    status TEXT DEFAULT 'queued',
    pk SERIAL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS instagram_feeds (
    instagram_feed_id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    job_id UUID REFERENCES jobs(job_id),
    llm_trace_id UUID REFERENCES llm_traces(llm_trace_id) ON DELETE SET NULL,
    overlay_id UUID REFERENCES overlay_layouts(overlay_id),
    tenant_id VARCHAR(255) NOT NULL,
    refined_ad_copy_eng TEXT NOT NULL,
    ad_copy_kor TEXT,
    tone_style TEXT NOT NULL,
    product_description TEXT NOT NULL,
    gpt_prompt TEXT NOT NULL,
    instagram_ad_copy TEXT NOT NULL,
    hashtags TEXT NOT NULL,
    used_temperature FLOAT,
    used_max_tokens INTEGER,
    latency_ms FLOAT,
    pk SERIAL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_jobs_variants_job_id ON jobs_variants(job_id);
CREATE INDEX IF NOT EXISTS idx_txt_ad_copy_generations_job_id_stage ON txt_ad_copy_generations(job_id, generation_stage);

-- Job-level notification (02, v1.0.0): on every UPDATE of jobs (no WHEN clause); the function
-- notifies only when current_step or status changed.
CREATE OR REPLACE FUNCTION notify_job_state_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.current_step IS DISTINCT FROM NEW.current_step OR OLD.status IS DISTINCT FROM NEW.status THEN
        PERFORM pg_notify('job_state_changed', json_build_object(
            'job_id', NEW.job_id::text,
            'current_step', NEW.current_step,
            'status', NEW.status,
            'tenant_id', NEW.tenant_id,
            'updated_at', NEW.updated_at)::text);
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS job_state_change_trigger ON jobs;
CREATE TRIGGER job_state_change_trigger
    AFTER UPDATE ON jobs
    FOR EACH ROW
    EXECUTE FUNCTION notify_job_state_change();

-- Variant notification (03, v1.3.0): also when only updated_at changed, so a write that bumps
-- retry_count or sets overlaid_img_asset_id notifies the same (step, status) again. It raises a
-- NOTICE on every UPDATE, as the deployment's does (its debugging aid, sent to the writer).
CREATE OR REPLACE FUNCTION notify_job_variant_state_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    reason TEXT;
BEGIN
    IF OLD.current_step IS DISTINCT FROM NEW.current_step THEN
        reason := 'current_step changed';
    ELSIF OLD.status IS DISTINCT FROM NEW.status THEN
        reason := 'status changed';
    ELSIF OLD.updated_at IS DISTINCT FROM NEW.updated_at THEN
        reason := 'updated_at changed';
    END IF;
    RAISE NOTICE '[NOTIFY_TRIGGER] variant_id=%, job_id=%, reason=%', NEW.job_variants_id, NEW.job_id, reason;
    IF reason IS NOT NULL THEN
        PERFORM pg_notify('job_variant_state_changed', json_build_object(
            'job_variants_id', NEW.job_variants_id::text,
            'job_id', NEW.job_id::text,
            'current_step', NEW.current_step,
            'status', NEW.status,
            'img_asset_id', NEW.img_asset_id::text,
            'tenant_id', (SELECT tenant_id FROM jobs WHERE job_id = NEW.job_id),
            'updated_at', NEW.updated_at)::text);
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS job_variant_state_change_trigger ON jobs_variants;
CREATE TRIGGER job_variant_state_change_trigger
    AFTER UPDATE ON jobs_variants
    FOR EACH ROW
    EXECUTE FUNCTION notify_job_variant_state_change();

-- The job row follows its variants (03, v1.3.0). Fires on every UPDATE leaving a variant done or
-- failed, changed or not. No lock on the job row: two variants committing at once each count the
-- other as unfinished (READ COMMITTED), which is how a job is left (iou_eval, running).
CREATE OR REPLACE FUNCTION check_all_variants_done() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    total_count INTEGER;
    done_count INTEGER;
    failed_count INTEGER;
    running_count INTEGER;
    queued_count INTEGER;
    step_done_count INTEGER;
    iou_eval_done_count INTEGER;
    job_status TEXT;
    job_current_step TEXT;
BEGIN
    SELECT count(*),
           count(*) FILTER (WHERE status = 'done'),
           count(*) FILTER (WHERE status = 'failed'),
           count(*) FILTER (WHERE status = 'running'),
           count(*) FILTER (WHERE status = 'queued'),
           count(*) FILTER (WHERE status = 'done' AND current_step = NEW.current_step)
      INTO total_count, done_count, failed_count, running_count, queued_count, step_done_count
      FROM jobs_variants WHERE job_id = NEW.job_id;

    IF NEW.current_step = 'img_gen' THEN
        RETURN NEW;
    END IF;

    IF NEW.current_step = 'iou_eval' AND NEW.status = 'done' THEN
        SELECT count(*) INTO iou_eval_done_count FROM jobs_variants
         WHERE job_id = NEW.job_id AND current_step = 'iou_eval' AND status = 'done';
        job_current_step := 'iou_eval';
        IF iou_eval_done_count = total_count AND running_count = 0 AND queued_count = 0 AND failed_count = 0 THEN
            job_status := 'done';
        ELSE
            job_status := 'running';
        END IF;
    ELSIF step_done_count = total_count AND NEW.current_step <> 'iou_eval' THEN
        job_status := 'done';
        job_current_step := NEW.current_step;
    ELSIF failed_count > 0 AND done_count + failed_count = total_count THEN
        job_status := 'failed';
        job_current_step := NEW.current_step;
    ELSIF running_count > 0 OR queued_count > 0 OR done_count > 0 OR failed_count > 0 THEN
        job_status := 'running';
        IF step_done_count > 0 THEN
            job_current_step := NEW.current_step;
        ELSE
            SELECT current_step INTO job_current_step FROM jobs WHERE job_id = NEW.job_id;
        END IF;
    ELSE
        RETURN NEW;
    END IF;

    UPDATE jobs SET status = job_status, current_step = job_current_step, updated_at = CURRENT_TIMESTAMP
     WHERE job_id = NEW.job_id
       AND (status IS DISTINCT FROM job_status OR current_step IS DISTINCT FROM job_current_step);
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS check_all_variants_done_trigger ON jobs_variants;
CREATE TRIGGER check_all_variants_done_trigger
    AFTER UPDATE ON jobs_variants
    FOR EACH ROW
    WHEN (NEW.status = 'done' OR NEW.status = 'failed')
    EXECUTE FUNCTION check_all_variants_done();

-- ye-run's own objects, kept apart by the ye_run_ prefix: the run registry and the
-- transition history. Idempotent. Needs the jobs and jobs_variants tables.

CREATE TABLE IF NOT EXISTS ye_run_runs (
    run_id          text PRIMARY KEY,
    scenario        text NOT NULL,
    tenant_id       text NOT NULL,
    tenant_created  boolean NOT NULL DEFAULT false,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    outcome         text,
    cleaned_at      timestamptz
);

-- Who runs it (host, pid, a token unique to that process's life) and its last sign of life: a
-- cleaner never deletes the rows of a run whose process is alive (see runner/db/liveness.py).
-- Added by ALTER so a registry installed by an older ye-run gains them on `ye-run db init`.
ALTER TABLE ye_run_runs
    ADD COLUMN IF NOT EXISTS owner_host   text,
    ADD COLUMN IF NOT EXISTS owner_pid    integer,
    ADD COLUMN IF NOT EXISTS owner_token  text,
    ADD COLUMN IF NOT EXISTS seen_at      timestamptz,
    ADD COLUMN IF NOT EXISTS stale_after  interval,
    -- A run's cleanup that waits for the pipeline: after this, `ye-run cleanup --pending` removes its rows.
    ADD COLUMN IF NOT EXISTS cleanup_pending_until timestamptz,
    -- Rows its cleanup deleted (seeded and dependent), for `ye-run runs`; NULL: not cleaned, or by tenant.
    ADD COLUMN IF NOT EXISTS rows_deleted bigint;

-- Every row a run seeded, by table and primary key (JSON array of the key's values).
CREATE TABLE IF NOT EXISTS ye_run_seeded (
    run_id      text NOT NULL REFERENCES ye_run_runs (run_id) ON DELETE CASCADE,
    table_name  text NOT NULL,
    row_key     jsonb NOT NULL,
    PRIMARY KEY (run_id, table_name, row_key)
);

-- Every write of (current_step, status), with the time it happened (clock_timestamp(), not
-- the transaction's start). `kind` is 'v' for a variant row, 'j' for a job row. Ids grow in
-- commit order per row (a row's writers are serialised by its lock), which is why readers
-- keep a cursor per row and never one global cursor.
CREATE TABLE IF NOT EXISTS ye_run_history (
    id            bigserial PRIMARY KEY,
    kind          char(1) NOT NULL,
    row_id        uuid NOT NULL,
    job_id        uuid NOT NULL,
    current_step  text,
    status        text,
    retry_count   integer,
    changed_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS ye_run_history_row_idx ON ye_run_history (row_id, id);
CREATE INDEX IF NOT EXISTS ye_run_history_job_idx ON ye_run_history (job_id);

-- SECURITY DEFINER (with the installer's search_path, fixed): whoever writes jobs or jobs_variants (the
-- application's own role) records the history without any grant on ye-run's table, so installing it can never
-- make the application's writes fail with "permission denied".
--
-- Each record is also announced on the ye_run_history channel (delivered at commit, in commit
-- order), so a reader sees it without a query; a reader that missed some (not connected) reads
-- the table by its cursors. The payload stays far below NOTIFY's 8000 bytes: step and status
-- are cut to 200 characters there (a reader sees the cut and reads the row instead). Written out
-- in each function, not shared through one taking the table's row type: that would make the
-- table impossible to drop on its own.
CREATE OR REPLACE FUNCTION ye_run_record_variant() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    recorded_id bigint;
    recorded_at timestamptz;
    retries integer := (to_jsonb(NEW) ->> 'retry_count')::integer;
BEGIN
    INSERT INTO ye_run_history (kind, row_id, job_id, current_step, status, retry_count)
    VALUES ('v', NEW.job_variants_id, NEW.job_id, NEW.current_step, NEW.status, retries)
    RETURNING id, changed_at INTO recorded_id, recorded_at;
    PERFORM pg_notify('ye_run_history', json_build_array(recorded_id, 'v', NEW.job_variants_id, NEW.job_id,
        left(NEW.current_step::text, 200), left(NEW.status::text, 200), retries, recorded_at)::text);
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION ye_run_record_job() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    recorded_id bigint;
    recorded_at timestamptz;
BEGIN
    INSERT INTO ye_run_history (kind, row_id, job_id, current_step, status)
    VALUES ('j', NEW.job_id, NEW.job_id, NEW.current_step, NEW.status)
    RETURNING id, changed_at INTO recorded_id, recorded_at;
    PERFORM pg_notify('ye_run_history', json_build_array(recorded_id, 'j', NEW.job_id, NEW.job_id,
        left(NEW.current_step::text, 200), left(NEW.status::text, 200), NULL, recorded_at)::text);
    RETURN NEW;
END $$;

-- UPDATE OF fires whenever the columns are written, even with the same value: that is how a
-- duplicate terminal write becomes visible. The notify trigger fires only on a change.
CREATE OR REPLACE TRIGGER ye_run_history_variant
AFTER INSERT OR UPDATE OF current_step, status ON jobs_variants
FOR EACH ROW EXECUTE FUNCTION ye_run_record_variant();

CREATE OR REPLACE TRIGGER ye_run_history_job
AFTER INSERT OR UPDATE OF current_step, status ON jobs
FOR EACH ROW EXECUTE FUNCTION ye_run_record_job();

-- Schema v2 (PostgreSQL). Kept equal to migrations/sqlite/0002_failure_kind_end_reason.sql.
-- Why a trial failed and why a study ended are columns, not prefixes of an error message; a retried
-- trial (same parameters, new number) points at the attempt it retries; a finished trial records
-- where its weights are and their sha256 in the same write as its result.
ALTER TABLE trials ADD COLUMN failure_kind TEXT;
ALTER TABLE trials ADD COLUMN retry_of BIGINT;
ALTER TABLE trials ADD COLUMN attempt BIGINT NOT NULL DEFAULT 0;
ALTER TABLE trials ADD COLUMN weights_path TEXT;
ALTER TABLE trials ADD COLUMN model_sha256 TEXT;
ALTER TABLE studies ADD COLUMN end_reason TEXT;

-- Rows written before v2 said "interrupted:" / "stopped:" at the start of the error.
UPDATE trials SET failure_kind = CASE
    WHEN error LIKE 'interrupted:%' THEN 'interrupted'
    WHEN error LIKE 'stopped:%' THEN 'stopped'
    ELSE 'error' END
WHERE state = 'failed';
UPDATE studies SET end_reason = CASE
    WHEN state = 'stopped' THEN 'stopped'
    WHEN state = 'failed' THEN 'failed'
    WHEN max_minutes IS NOT NULL AND finished_at >= created_at + max_minutes * 60000 THEN 'minutes_budget'
    ELSE 'trial_budget' END
WHERE state <> 'running';
CREATE INDEX trials_by_retry_of ON trials (retry_of);

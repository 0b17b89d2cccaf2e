-- Schema v4 (postgres). Kept equal to the other backend's 0004_trial_pages.sql.
-- A study's trials are read a page at a time in insertion order (keyset on id): GET
-- /studies/{id}/trials?after=... at 10,000 trials and more.
CREATE INDEX trials_by_study_id ON trials (study_id, id);

-- Schema v4 (sqlite). Kept equal to the other backend's 0004_trial_pages.sql.
-- Reads of a study with 10,000 trials and more that must not touch the rows themselves (a row holds
-- its result blob, and on SQLite every column added after it sits behind the blob's overflow pages):
-- the trials list a page at a time in insertion order (keyset on id), the counts by state and
-- failure kind, and the complete trials' scores in number order, each served from an index alone.
CREATE INDEX trials_by_study_id ON trials (study_id, id);
CREATE INDEX trials_counts ON trials (study_id, state, failure_kind);
CREATE INDEX trials_scores ON trials (study_id, state, number, val_accuracy, inference_ms);

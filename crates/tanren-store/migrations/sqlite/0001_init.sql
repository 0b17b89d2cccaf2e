-- Schema v1 (SQLite). Kept column-for-column equal to migrations/postgres/0001_init.sql: times are unix
-- milliseconds (BIGINT), booleans 0/1 BIGINT, structured data JSON TEXT, so one set of queries serves both.
CREATE TABLE datasets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    num_classes BIGINT NOT NULL,
    num_train BIGINT NOT NULL,
    num_test BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    summary TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE studies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    dataset_id BIGINT NOT NULL REFERENCES datasets(id),
    state TEXT NOT NULL,
    spec TEXT NOT NULL,
    max_trials BIGINT,
    max_minutes DOUBLE PRECISION,
    error TEXT,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);

CREATE TABLE trials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    study_id BIGINT NOT NULL REFERENCES studies(id),
    number BIGINT NOT NULL,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    config TEXT NOT NULL,
    worker_id TEXT,
    device TEXT,
    val_accuracy DOUBLE PRECISION,
    val_loss DOUBLE PRECISION,
    test_accuracy DOUBLE PRECISION,
    test_loss DOUBLE PRECISION,
    train_seconds DOUBLE PRECISION,
    prepare_seconds DOUBLE PRECISION,
    inference_ms DOUBLE PRECISION,
    inference_ips DOUBLE PRECISION,
    parameter_count BIGINT,
    model_bytes BIGINT,
    epochs_completed BIGINT,
    result TEXT,
    error TEXT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    UNIQUE (study_id, number)
);
CREATE INDEX trials_by_study ON trials (study_id, state);

CREATE TABLE trial_epochs (
    trial_id BIGINT NOT NULL REFERENCES trials(id),
    epoch BIGINT NOT NULL,
    train_loss DOUBLE PRECISION NOT NULL,
    val_loss DOUBLE PRECISION NOT NULL,
    val_accuracy DOUBLE PRECISION NOT NULL,
    elapsed_seconds DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (trial_id, epoch)
);

CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    grpc_url TEXT NOT NULL,
    device TEXT NOT NULL,
    device_name TEXT NOT NULL,
    torch_version TEXT NOT NULL,
    cuda_available BIGINT NOT NULL,
    slots BIGINT NOT NULL,
    registered_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);

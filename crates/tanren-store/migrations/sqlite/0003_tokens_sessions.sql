-- Schema v3 (sqlite). Kept equal to migrations/postgres/0003_tokens_sessions.sql.
-- API tokens and dashboard sessions. Only a SHA-256 of each secret is stored: a copy of the database
-- lets nobody sign in. A session belongs to the token that opened it, so revoking the token ends it.
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE TABLE sessions (
    session_sha256 TEXT PRIMARY KEY,
    token_id BIGINT NOT NULL REFERENCES api_tokens (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_token ON sessions (token_id);

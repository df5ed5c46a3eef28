-- Users, login sessions with their refresh tokens, API keys, and server-wide secrets.
-- Secrets are never stored in clear: passwords as argon2id PHC strings, refresh tokens and
-- API keys as hex SHA-256 digests. Deleting a user deletes its sessions, refresh tokens and
-- the API keys it created (the connection turns foreign_keys on).

CREATE TABLE users (
    id TEXT NOT NULL PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    email TEXT,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE INDEX users_created_at_id_idx ON users (created_at, id);

CREATE TABLE auth_sessions (
    id TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);

CREATE INDEX auth_sessions_user_id_idx ON auth_sessions (user_id);

CREATE TABLE refresh_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES auth_sessions (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);

CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);

CREATE TABLE api_keys (
    id TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    agents TEXT,
    rate_limit_per_minute INTEGER,
    created_by TEXT REFERENCES users (id) ON DELETE CASCADE,
    expires_at TIMESTAMP,
    last_used_at TIMESTAMP,
    revoked_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL
);

CREATE INDEX api_keys_created_at_id_idx ON api_keys (created_at, id);
CREATE INDEX api_keys_created_by_idx ON api_keys (created_by);

CREATE TABLE server_secrets (
    name TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

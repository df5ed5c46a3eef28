-- Users, login sessions with their refresh tokens, API keys, and server-wide secrets.
-- Secrets are never stored in clear: passwords as argon2id PHC strings, refresh tokens and
-- API keys as hex SHA-256 digests. Deleting a user deletes its sessions, refresh tokens and
-- the API keys it created.
-- Constraints are named explicitly: the storage adapter maps violations by constraint name.

CREATE TABLE users (
    id TEXT NOT NULL,
    username TEXT NOT NULL,
    email TEXT,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_username_key UNIQUE (username)
);

CREATE INDEX users_created_at_id_idx ON users (created_at, id);

CREATE TABLE auth_sessions (
    id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP,
    CONSTRAINT auth_sessions_pkey PRIMARY KEY (id),
    CONSTRAINT auth_sessions_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);

CREATE INDEX auth_sessions_user_id_idx ON auth_sessions (user_id);

CREATE TABLE refresh_tokens (
    token_hash TEXT NOT NULL,
    session_id TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP,
    CONSTRAINT refresh_tokens_pkey PRIMARY KEY (token_hash),
    CONSTRAINT refresh_tokens_session_id_fkey FOREIGN KEY (session_id) REFERENCES auth_sessions (id) ON DELETE CASCADE
);

CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);

CREATE TABLE api_keys (
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    agents TEXT,
    rate_limit_per_minute INTEGER,
    created_by TEXT,
    expires_at TIMESTAMP,
    last_used_at TIMESTAMP,
    revoked_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    CONSTRAINT api_keys_pkey PRIMARY KEY (id),
    CONSTRAINT api_keys_secret_hash_key UNIQUE (secret_hash),
    CONSTRAINT api_keys_created_by_fkey FOREIGN KEY (created_by) REFERENCES users (id) ON DELETE CASCADE
);

CREATE INDEX api_keys_created_at_id_idx ON api_keys (created_at, id);
CREATE INDEX api_keys_created_by_idx ON api_keys (created_by);

CREATE TABLE server_secrets (
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    CONSTRAINT server_secrets_pkey PRIMARY KEY (name)
);

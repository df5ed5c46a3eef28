-- Conversations with their messages, and logged one-shot runs.
-- JSON and ids are TEXT; timestamps are UTC without time zone, to the microsecond.
-- Deleting an agent deletes its conversations, and deleting a conversation its messages
-- (the connection turns foreign_keys on).

CREATE TABLE conversations (
    id TEXT NOT NULL PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    session_key TEXT NOT NULL,
    context TEXT NOT NULL,
    message_count BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (agent_id, session_key)
);

CREATE INDEX conversations_updated_at_id_idx ON conversations (updated_at, id);
CREATE INDEX conversations_agent_id_updated_at_id_idx ON conversations (agent_id, updated_at, id);

CREATE TABLE messages (
    id TEXT NOT NULL PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    agent_id TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    total_tokens INTEGER,
    latency_ms BIGINT,
    provider_id TEXT,
    model_name TEXT,
    agent_version INTEGER,
    status TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE INDEX messages_conversation_id_created_at_id_idx ON messages (conversation_id, created_at, id);
CREATE INDEX messages_agent_id_created_at_id_idx ON messages (agent_id, created_at, id);

CREATE TABLE runs (
    id TEXT NOT NULL PRIMARY KEY,
    preamble TEXT NOT NULL,
    prompt TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    model_name TEXT NOT NULL,
    response TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    total_tokens INTEGER,
    latency_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    log_meta TEXT NOT NULL,
    user_id TEXT,
    session_id TEXT,
    component TEXT,
    created_at TIMESTAMP NOT NULL
);

CREATE INDEX runs_created_at_id_idx ON runs (created_at, id);
CREATE INDEX runs_user_id_idx ON runs (user_id);
CREATE INDEX runs_session_id_idx ON runs (session_id);
CREATE INDEX runs_component_idx ON runs (component);

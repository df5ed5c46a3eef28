-- Tasks: the queue every replica's workers claim from (docs/tasks.md). A claim is a lease
-- (lease_owner, lease_expires_at) renewed while the task runs. `priority_rank` orders claims
-- (high 2, medium 1, low 0). `idempotency_scope` is the creating principal (or '') so that
-- an idempotency key is unique per caller. `data` and `result` are JSON text.

CREATE TABLE tasks (
    id TEXT NOT NULL PRIMARY KEY,
    title TEXT NOT NULL,
    description TEXT,
    agent_id TEXT NOT NULL,
    agent_key TEXT NOT NULL,
    priority TEXT NOT NULL,
    priority_rank INTEGER NOT NULL,
    data TEXT NOT NULL,
    status TEXT NOT NULL,
    idempotency_scope TEXT NOT NULL,
    idempotency_key TEXT,
    max_attempts INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    run_at TIMESTAMP NOT NULL,
    result TEXT,
    error TEXT,
    created_by TEXT,
    lease_owner TEXT,
    lease_expires_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    completed_at TIMESTAMP
);

CREATE UNIQUE INDEX tasks_idempotency_idx ON tasks (idempotency_scope, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_claim_idx ON tasks (status, priority_rank, created_at, id);
CREATE INDEX tasks_created_at_id_idx ON tasks (created_at, id);
CREATE INDEX tasks_agent_idx ON tasks (agent_id, created_at);

-- Events whose payload is too large for a PostgreSQL NOTIFY (8,000 bytes) are stored here
-- and sent by reference; rows older than a minute are deleted. Unused on SQLite (one process,
-- events stay in memory), kept for one schema on both backends.
CREATE TABLE event_payloads (
    id TEXT NOT NULL PRIMARY KEY,
    body TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

-- Requests counted per client and minute across replicas (rate limits that hold for the
-- deployment, docs/security.md): each replica adds its counts every few hundred
-- milliseconds and reads the totals back. Windows older than two minutes are deleted.
CREATE TABLE rate_usage (
    client_key TEXT NOT NULL,
    window_start TIMESTAMP NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (client_key, window_start)
);

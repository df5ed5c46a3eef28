-- Prompt optimisation (docs/optimization.md). A version can be a draft: an optimisation's
-- proposal, pinnable and restorable, never served by default (the latest published version
-- is the highest one that is not a draft). An optimisation is durable work claimed by a
-- runner like an evaluation run (lease_owner, lease_expires_at); `progress` keeps what it
-- has done so far as JSON (its evaluation runs, the candidates, the evidence), so a runner
-- that takes it over goes on from there. At most one optimisation per agent is queued or
-- running (the partial unique index).

ALTER TABLE agent_versions ADD COLUMN draft INTEGER NOT NULL DEFAULT 0;

CREATE TABLE optimizations (
    id TEXT NOT NULL PRIMARY KEY,
    agent_id TEXT NOT NULL,
    testset_id TEXT NOT NULL,
    status TEXT NOT NULL,
    phase TEXT,
    request TEXT NOT NULL,
    progress TEXT NOT NULL,
    draft_version INTEGER,
    error TEXT,
    created_by TEXT,
    lease_owner TEXT,
    lease_expires_at TIMESTAMP,
    attempts INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    completed_at TIMESTAMP
);

CREATE UNIQUE INDEX optimizations_one_active_idx ON optimizations (agent_id)
    WHERE status IN ('pending', 'running');
CREATE INDEX optimizations_agent_idx ON optimizations (agent_id, created_at, id);
CREATE INDEX optimizations_claim_idx ON optimizations (status, created_at, id);

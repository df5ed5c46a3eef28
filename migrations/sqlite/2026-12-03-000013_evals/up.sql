-- Test sets and evaluation runs (docs/evals.md). A test set keeps its cases as one JSON array
-- (`cases`, each case in the API's own spelling) with their count beside it for lists, and a
-- `revision` that every write moves on (a write names the revision it read: optimistic
-- concurrency). A run keeps its configurations and a snapshot of the cases as JSON, and is
-- claimed by a runner like a task (lease_owner, lease_expires_at). Each result is one row,
-- stored as it comes; a run's progress is the count of its rows.

CREATE TABLE testsets (
    id TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT,
    cases TEXT NOT NULL,
    case_count BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE INDEX testsets_created_at_id_idx ON testsets (created_at, id);

CREATE TABLE eval_runs (
    id TEXT NOT NULL PRIMARY KEY,
    testset_id TEXT NOT NULL,
    testset_name TEXT NOT NULL,
    status TEXT NOT NULL,
    configurations TEXT NOT NULL,
    cases TEXT NOT NULL,
    concurrency INTEGER NOT NULL,
    repeats INTEGER NOT NULL,
    judge TEXT,
    total BIGINT NOT NULL,
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

CREATE INDEX eval_runs_claim_idx ON eval_runs (status, created_at, id);
CREATE INDEX eval_runs_created_at_id_idx ON eval_runs (created_at, id);
CREATE INDEX eval_runs_testset_idx ON eval_runs (testset_id, created_at);

CREATE TABLE eval_results (
    run_id TEXT NOT NULL,
    configuration INTEGER NOT NULL,
    case_id TEXT NOT NULL,
    repetition INTEGER NOT NULL,
    passed INTEGER NOT NULL,
    output TEXT NOT NULL,
    verdicts TEXT NOT NULL,
    error TEXT,
    latency_ms BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    model TEXT,
    tool_calls TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (run_id, configuration, case_id, repetition)
);

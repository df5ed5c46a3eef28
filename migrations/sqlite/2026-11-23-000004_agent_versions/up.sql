-- Published agent versions: immutable, numbered snapshots of an agent's definition.
-- `snapshot` is the whole definition as JSON (a format private to the storage adapter);
-- timestamps are UTC without time zone, to the microsecond. Deleting an agent deletes its
-- versions (the connection turns foreign_keys on).

CREATE TABLE agent_versions (
    agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    snapshot TEXT NOT NULL,
    note TEXT,
    created_by TEXT,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (agent_id, version)
);

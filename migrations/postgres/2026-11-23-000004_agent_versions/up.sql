-- Published agent versions: immutable, numbered snapshots of an agent's definition.
-- `snapshot` is the whole definition as JSON (a format private to the storage adapter);
-- timestamps are UTC without time zone, to the microsecond. Deleting an agent deletes its
-- versions. Constraints are named explicitly: the storage adapter maps violations by name.

CREATE TABLE agent_versions (
    agent_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    snapshot TEXT NOT NULL,
    note TEXT,
    created_by TEXT,
    created_at TIMESTAMP NOT NULL,
    CONSTRAINT agent_versions_pkey PRIMARY KEY (agent_id, version),
    CONSTRAINT agent_versions_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES agents (id) ON DELETE CASCADE
);

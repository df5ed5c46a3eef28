-- Agents, their tags (for the tags filter) and API-managed providers.
-- JSON and ids are TEXT; timestamps are UTC without time zone, to the microsecond.

CREATE TABLE agents (
    id TEXT NOT NULL PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    description TEXT,
    instructions TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    model_name TEXT NOT NULL,
    temperature REAL,
    top_p REAL,
    max_tokens INTEGER,
    tags TEXT NOT NULL,
    status TEXT NOT NULL,
    agent_type TEXT NOT NULL,
    tools TEXT NOT NULL,
    cluster TEXT,
    created_by TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE INDEX agents_created_at_id_idx ON agents (created_at, id);
CREATE INDEX agents_status_idx ON agents (status);
CREATE INDEX agents_cluster_idx ON agents (cluster);
CREATE INDEX agents_provider_id_idx ON agents (provider_id);

CREATE TABLE agent_tags (
    agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (agent_id, tag)
);

CREATE INDEX agent_tags_tag_idx ON agent_tags (tag);

CREATE TABLE providers (
    id TEXT NOT NULL PRIMARY KEY,
    kind TEXT NOT NULL,
    base_url TEXT,
    api_key TEXT,
    models TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

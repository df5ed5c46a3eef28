-- Agents, their tags (for the tags filter) and API-managed providers.
-- JSON and ids are TEXT; timestamps are UTC without time zone, to the microsecond.
-- Constraints are named explicitly: the storage adapter maps unique violations to the
-- conflicting field by constraint name.

CREATE TABLE agents (
    id TEXT NOT NULL,
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    instructions TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    model_name TEXT NOT NULL,
    temperature DOUBLE PRECISION,
    top_p DOUBLE PRECISION,
    max_tokens INTEGER,
    tags TEXT NOT NULL,
    status TEXT NOT NULL,
    agent_type TEXT NOT NULL,
    tools TEXT NOT NULL,
    cluster TEXT,
    created_by TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT agents_pkey PRIMARY KEY (id),
    CONSTRAINT agents_key_key UNIQUE (key),
    CONSTRAINT agents_name_key UNIQUE (name)
);

CREATE INDEX agents_created_at_id_idx ON agents (created_at, id);
CREATE INDEX agents_status_idx ON agents (status);
CREATE INDEX agents_cluster_idx ON agents (cluster);
CREATE INDEX agents_provider_id_idx ON agents (provider_id);

CREATE TABLE agent_tags (
    agent_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    CONSTRAINT agent_tags_pkey PRIMARY KEY (agent_id, tag),
    CONSTRAINT agent_tags_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES agents (id) ON DELETE CASCADE
);

CREATE INDEX agent_tags_tag_idx ON agent_tags (tag);

CREATE TABLE providers (
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    base_url TEXT,
    api_key TEXT,
    models TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT providers_pkey PRIMARY KEY (id)
);

-- Registered MCP servers: a stdio command (command, args, env) or a remote streamable-HTTP
-- endpoint (url, headers). `env` and `headers` are JSON objects whose values are secrets
-- (never returned by the API). `args` and `capabilities` are JSON arrays. The status is not
-- stored: it is the state of a process on one replica.
-- Constraints are named explicitly: the storage adapter maps unique violations to the
-- conflicting field by constraint name.

CREATE TABLE mcp_servers (
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    slug TEXT NOT NULL,
    transport TEXT NOT NULL,
    command TEXT,
    args TEXT,
    env TEXT,
    url TEXT,
    headers TEXT,
    capabilities TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT mcp_servers_pkey PRIMARY KEY (id),
    CONSTRAINT mcp_servers_slug_key UNIQUE (slug)
);

CREATE INDEX mcp_servers_created_at_id_idx ON mcp_servers (created_at, id);

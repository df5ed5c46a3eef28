-- Registered MCP servers: a stdio command (command, args, env) or a remote streamable-HTTP
-- endpoint (url, headers). `env` and `headers` are JSON objects whose values are secrets
-- (never returned by the API). `args` and `capabilities` are JSON arrays. The status is not
-- stored: it is the state of a process on one replica.

CREATE TABLE mcp_servers (
    id TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    transport TEXT NOT NULL,
    command TEXT,
    args TEXT,
    env TEXT,
    url TEXT,
    headers TEXT,
    capabilities TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE INDEX mcp_servers_created_at_id_idx ON mcp_servers (created_at, id);

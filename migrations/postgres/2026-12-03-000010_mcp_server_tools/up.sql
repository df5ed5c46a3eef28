-- The tools an MCP server listed at its last handshake (a JSON array of
-- {"name", "description", "input_schema"}), kept so agents can be offered them while the
-- server is not running and GET …/tools answers without starting it.
ALTER TABLE mcp_servers ADD COLUMN tools TEXT NOT NULL DEFAULT '[]';

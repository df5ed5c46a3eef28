-- Tool calls on messages: an assistant message's calls as a JSON array of
-- {"id", "name", "arguments"} (NULL when it made none), and the call a tool message answers.
ALTER TABLE messages ADD COLUMN tool_calls TEXT NULL;
ALTER TABLE messages ADD COLUMN tool_call_id TEXT NULL;

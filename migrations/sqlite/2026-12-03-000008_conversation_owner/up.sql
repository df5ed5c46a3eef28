-- Who opened a conversation: a user's id, `key:<id>` for an API key, or `anonymous-dev`;
-- NULL for a trusted caller and for conversations stored before owners were recorded.
-- A key that may only invoke agents reads and continues only the conversations it opened.
ALTER TABLE conversations ADD COLUMN created_by TEXT NULL;

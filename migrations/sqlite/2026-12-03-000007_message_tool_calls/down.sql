ALTER TABLE messages DROP COLUMN tool_call_id;
ALTER TABLE messages DROP COLUMN tool_calls;
